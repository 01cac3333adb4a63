"""The contract between the voicebot's processes: schemas, subjects, streams, bus helpers."""
