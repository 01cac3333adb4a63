-- Voicebot SAV schema. Idempotent: safe to apply at every start (`voicebot up` does).
-- One server, one database by default; customers and tickets can be split into two databases
-- by pointing CUSTOMERS_DATABASE_URL and TICKETS_DATABASE_URL at different servers.

CREATE TABLE IF NOT EXISTS customers (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS customers_name_key ON customers (name);

CREATE TABLE IF NOT EXISTS phone_numbers (
    phone        text PRIMARY KEY CHECK (phone ~ '^0[1-9][0-9]{8}$'),
    customer_id  integer NOT NULL REFERENCES customers(id) ON DELETE CASCADE
);
-- French numbers as 10 digits, Belgian and Swiss ones in E.164 (+32…, +41…), as brain/phone.py
-- keeps them (the first schema took French numbers only).
ALTER TABLE phone_numbers DROP CONSTRAINT IF EXISTS phone_numbers_phone_check;
ALTER TABLE phone_numbers ADD CONSTRAINT phone_numbers_phone_check
    CHECK (phone ~ '^(0[1-9][0-9]{8}|\+(32|41)[1-9][0-9]{7,8})$');
-- A misheard number is matched by its first or last four digits (brain/store.py).
CREATE INDEX IF NOT EXISTS phone_numbers_head ON phone_numbers (left(phone, 4));
CREATE INDEX IF NOT EXISTS phone_numbers_tail ON phone_numbers (right(phone, 4));
-- A misheard number is looked up with the caller's name too (brain/store.py find_customer_like).
CREATE INDEX IF NOT EXISTS customers_name_words ON customers USING gin (to_tsvector('simple', name));

CREATE TABLE IF NOT EXISTS offers (
    id           serial PRIMARY KEY,
    customer_id  integer NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('internet', 'mobile')),
    label        text NOT NULL,
    UNIQUE (customer_id, kind, label)
);

CREATE TABLE IF NOT EXISTS technicians (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    categories  text[] NOT NULL DEFAULT ARRAY['internet', 'mobile'],
    available   boolean NOT NULL DEFAULT false,
    queue       text NOT NULL DEFAULT 'technicians'  -- dialplan target of a transfer
);

CREATE SEQUENCE IF NOT EXISTS ticket_numbers START 100001;

CREATE TABLE IF NOT EXISTS tickets (
    id           serial PRIMARY KEY,
    number       text NOT NULL UNIQUE DEFAULT nextval('ticket_numbers')::text,
    call_id      uuid UNIQUE,            -- one ticket per call: re-opening it is idempotent
    customer_id  integer REFERENCES customers(id),
    category     text CHECK (category IN ('internet', 'mobile')),
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'transferred', 'closed')),
    summary      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS calls (
    id           uuid PRIMARY KEY,
    caller       text,
    customer_id  integer REFERENCES customers(id),
    started_at   timestamptz NOT NULL DEFAULT now(),
    ended_at     timestamptz,
    outcome      text,
    mp3_path     text
);

-- Everything below is written by the archiver (`python -m archiver`) from the CALLS stream, and
-- by `voicebot archive` for the MP3 columns. The stream sequence of each CALLS message is the
-- idempotency key: a message delivered twice changes nothing. The `calls` figures are those
-- the call's stored events give (kept as a running summary, rebuilt from the events when in
-- doubt), so they do not depend on delivery order.
ALTER TABLE calls ADD COLUMN IF NOT EXISTS duration_s       real;     -- edge: first byte to hang-up
ALTER TABLE calls ADD COLUMN IF NOT EXISTS end_reason       text;     -- event.ended reason
ALTER TABLE calls ADD COLUMN IF NOT EXISTS hung_up_by       text;     -- caller | bot | edge
ALTER TABLE calls ADD COLUMN IF NOT EXISTS end_outcome      text;     -- hangup | transfer:<target> (the line)
ALTER TABLE calls ADD COLUMN IF NOT EXISTS transfer_target  text;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS phone            text;     -- number the caller gave the dialog
ALTER TABLE calls ADD COLUMN IF NOT EXISTS category         text;     -- internet | mobile
ALTER TABLE calls ADD COLUMN IF NOT EXISTS ticket           text;     -- ticket number, if one was opened
ALTER TABLE calls ADD COLUMN IF NOT EXISTS final_state      text;     -- last dialog state
-- Quality figures. `outcome` above is the dialog's (solved | transfer | ticket | abandoned |
-- no_input | max_length). Waits run from the caller's end of speech to the bot's first frame
-- on the line (the hold phrase counts: the caller is no longer in silence).
ALTER TABLE calls ADD COLUMN IF NOT EXISTS turns            integer;  -- caller turns decided on (speech or DTMF)
ALTER TABLE calls ADD COLUMN IF NOT EXISTS dead_air_s       real;     -- sum of those waits
ALTER TABLE calls ADD COLUMN IF NOT EXISTS max_wait_s       real;     -- the longest one
ALTER TABLE calls ADD COLUMN IF NOT EXISTS talk_overs       integer;  -- bot utterances the caller spoke over
ALTER TABLE calls ADD COLUMN IF NOT EXISTS repeat_prompts   integer;  -- "pardon, pouvez-vous répéter ?"
ALTER TABLE calls ADD COLUMN IF NOT EXISTS caller_repeats   integer;  -- the caller asked the bot to repeat
ALTER TABLE calls ADD COLUMN IF NOT EXISTS no_input_prompts integer;  -- "êtes-vous toujours en ligne ?"
ALTER TABLE calls ADD COLUMN IF NOT EXISTS hold_prompts     integer;  -- "un instant" (a slow provider)
ALTER TABLE calls ADD COLUMN IF NOT EXISTS provider_errors  integer;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS underruns        integer;  -- edge ticks with a started utterance starved
ALTER TABLE calls ADD COLUMN IF NOT EXISTS events           integer;  -- CALLS messages projected
ALTER TABLE calls ADD COLUMN IF NOT EXISTS last_seq         bigint;   -- highest CALLS sequence projected
ALTER TABLE calls ADD COLUMN IF NOT EXISTS updated_at       timestamptz;
-- `voicebot archive`: the stereo MP3 (caller left, bot right) and how to check it.
ALTER TABLE calls ADD COLUMN IF NOT EXISTS mp3_duration_s   real;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS mp3_bytes        bigint;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS mp3_sha256       text;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS archived_at      timestamptz;
ALTER TABLE calls ADD COLUMN IF NOT EXISTS archive_note     text;     -- e.g. audio the AUDIO stream had dropped
ALTER TABLE calls ADD COLUMN IF NOT EXISTS raw_deleted_at   timestamptz;  -- AUDIO purged (--delete-raw)
CREATE INDEX IF NOT EXISTS calls_caller ON calls (caller);
CREATE INDEX IF NOT EXISTS calls_phone ON calls (phone);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
CREATE INDEX IF NOT EXISTS calls_to_archive ON calls (ended_at) WHERE archived_at IS NULL;

-- Filled by the archiver from the CALLS stream; the stream sequence makes replays idempotent.
CREATE TABLE IF NOT EXISTS call_events (
    stream_seq  bigint PRIMARY KEY,
    call_id     uuid NOT NULL,
    subject     text NOT NULL,
    ts          timestamptz NOT NULL,
    body        jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_call ON call_events (call_id, stream_seq);
ALTER TABLE call_events ADD COLUMN IF NOT EXISTS headers jsonb;  -- as published (Nats-Msg-Id)

CREATE TABLE IF NOT EXISTS turns (
    call_id     uuid NOT NULL,
    turn        integer NOT NULL,
    state_from  text NOT NULL,
    state_to    text NOT NULL,
    intent      text,
    caller_text text,
    bot_actions text[] NOT NULL DEFAULT '{}',
    ts          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, turn)
);

-- What was said, both sides: the caller's final transcripts and the bot's utterances (their
-- times on the line are filled from the edge's playback reports).
CREATE TABLE IF NOT EXISTS transcripts (
    stream_seq    bigint PRIMARY KEY,
    call_id       uuid NOT NULL,
    speaker       text NOT NULL CHECK (speaker IN ('caller', 'bot')),
    text          text NOT NULL,
    confidence    real,              -- caller: the recogniser's; bot: NULL
    start_s       real,              -- caller: call-audio time (the recogniser's); bot: seconds
    end_s         real,              --   from the call's start, from the playback reports
    ts            timestamptz NOT NULL,  -- when it was published
    provider      text,              -- caller: deepgram | whisper
    utterance_id  text,              -- bot
    phrase        text,              -- bot: cached phrase key, NULL for dynamic text
    interrupted   boolean            -- bot: cut by a barge-in or a flush
);
CREATE INDEX IF NOT EXISTS transcripts_call ON transcripts (call_id, stream_seq);

-- Every dialog decision, with its latency breakdown (ms from the caller's end of speech).
CREATE TABLE IF NOT EXISTS decisions (
    stream_seq      bigint PRIMARY KEY,
    call_id         uuid NOT NULL,
    turn            integer NOT NULL,
    ts              timestamptz NOT NULL,
    trigger         text NOT NULL,
    trigger_seq     bigint NOT NULL,
    state_from      text NOT NULL,
    state_to        text NOT NULL,
    intent          text,
    slots           jsonb NOT NULL DEFAULT '{}',
    caller_text     text,
    nlu_source      text,
    llm_ms          real,
    actions         text[] NOT NULL DEFAULT '{}',
    expecting       text,
    epoch           integer NOT NULL DEFAULT 0,
    end_of_speech_s real,            -- call-audio time
    transcript_ms   real,
    nlu_ms          real,
    say_ms          real,
    first_frame_ms  real             -- from the edge's playback report of the reply
);
CREATE INDEX IF NOT EXISTS decisions_call ON decisions (call_id, stream_seq);

-- Development seed data (the sample dialog's caller among them).
INSERT INTO customers (name, email) VALUES
    ('Pierre Dupont', 'pierre.dupont@example.fr'),
    ('Marie Martin', 'marie.martin@example.fr'),
    ('Jean Bernard', 'jean.bernard@example.fr')
ON CONFLICT (name) DO NOTHING;

INSERT INTO phone_numbers (phone, customer_id)
SELECT v.phone, c.id FROM (VALUES
    ('0612345678', 'Pierre Dupont'),
    ('0145678912', 'Pierre Dupont'),
    ('0698765432', 'Marie Martin'),
    ('0755443322', 'Jean Bernard')
) AS v(phone, name) JOIN customers c ON c.name = v.name
ON CONFLICT (phone) DO NOTHING;

INSERT INTO offers (customer_id, kind, label)
SELECT c.id, v.kind, v.label FROM (VALUES
    ('Pierre Dupont', 'internet', 'Fibre 1 Gb/s'),
    ('Pierre Dupont', 'mobile', 'Forfait 100 Go'),
    ('Marie Martin', 'mobile', 'Forfait 20 Go'),
    ('Jean Bernard', 'internet', 'ADSL')
) AS v(name, kind, label) JOIN customers c ON c.name = v.name
ON CONFLICT DO NOTHING;

INSERT INTO technicians (name, categories, available, queue) VALUES
    ('Sophie Leroy', ARRAY['internet'], true, 'technicians'),
    ('Luc Moreau', ARRAY['mobile'], false, 'technicians')
ON CONFLICT (name) DO NOTHING;
