#!/usr/bin/env bash
# Production install of the voicebot's AI server on Debian (the Asterisk server is elsewhere).
#
#   sudo ./setup.sh            install: packages, .venv, .env, phrase cache, firewall, systemd
#   sudo ./setup.sh clean      remove the service, .venv and generated files, then install
#   ./setup.sh --dry-run       print what would be done, change nothing
#
# Non-interactive: export the variables below (DEEPGRAM_API_KEY, ..., REMOTE_ASTERISK_IP)
# before running; anything unset is asked for. Keys are written to .env (mode 600), never echoed.
# For development you need none of this: `make run`.
set -euo pipefail

cd "$(dirname "$0")"
PROJECT=$(pwd)
DRY_RUN=0
MODE=install
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    clean) MODE=clean ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument $arg (use clean, --dry-run)" >&2; exit 2 ;;
  esac
done

run() {  # print, and run unless --dry-run
  echo "+ $*"
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  echo "setup.sh: run as root (sudo ./setup.sh), or with --dry-run to see the steps" >&2
  exit 1
fi

ask() {  # ask VAR "question" [default] [secret]
  local var=$1 question=$2 default=${3:-} secret=${4:-}
  if [ -n "${!var:-}" ]; then return; fi
  if [ ! -t 0 ]; then
    printf -v "$var" '%s' "$default"
    return
  fi
  local answer
  if [ -n "$secret" ]; then
    read -r -s -p "$question: " answer; echo
  else
    read -r -p "$question${default:+ [$default]}: " answer
  fi
  printf -v "$var" '%s' "${answer:-$default}"
}

if [ "$MODE" = clean ]; then
  step "Cleaning a previous installation"
  run systemctl disable --now voicebot.service voicebot-archive.timer 2>/dev/null || true
  run rm -f /etc/systemd/system/voicebot.service /etc/systemd/system/voicebot-archive.*
  run rm -rf "$PROJECT/.venv" "$PROJECT/assets/cache"/*.raw "$PROJECT/assets/cache/manifest.json"
fi

step "1. System packages (Python 3.11+, venv, ufw)"
run apt-get update -q
run apt-get install -y -q python3 python3-venv python3-pip make ufw postgresql

step "2. Python environment (.venv) and the project"
run make -C "$PROJECT" setup

step "3. Keys, passwords and the Asterisk address"
DETECTED_IP=$(hostname -I 2>/dev/null | awk '{print $1}')
ask DEEPGRAM_API_KEY "Deepgram API key (empty: offline Whisper STT)" "" secret
ask GROQ_API_KEY "Groq API key (empty: offline rule-based NLU)" "" secret
ask OPENAI_API_KEY "OpenAI API key (empty: offline espeak-ng voice)" "" secret
ask DB_PASSWORD "PostgreSQL password for user voicebot" "$(head -c 12 /dev/urandom | base64 | tr -dc a-zA-Z0-9)" secret
ask SERVER_HOST_IP "IP of this AI server" "$DETECTED_IP"
ask REMOTE_ASTERISK_IP "IP of the remote Asterisk server" ""
API_TOKEN=${API_TOKEN:-$(head -c 24 /dev/urandom | base64 | tr -dc a-zA-Z0-9)}

if [ -f .env ] && [ "$MODE" != clean ]; then
  echo "keeping the existing .env (delete it or run 'setup.sh clean' to regenerate)"
else
  echo "+ write .env (mode 600)"
  if [ "$DRY_RUN" = 0 ]; then
    umask 077
    cat > .env <<EOF
# Written by setup.sh on $(date -u +%F). See .env.example for every variable.
DEEPGRAM_API_KEY=$DEEPGRAM_API_KEY
GROQ_API_KEY=$GROQ_API_KEY
OPENAI_API_KEY=$OPENAI_API_KEY
DATABASE_URL=postgresql://voicebot:$DB_PASSWORD@127.0.0.1:5432/voicebot
AUDIOSOCKET_HOST=0.0.0.0
AUDIOSOCKET_PORT=9090
HTTP_PORT=8080
METRICS_PORT=9091
ALLOWED_PEERS=${REMOTE_ASTERISK_IP}
API_TOKEN=$API_TOKEN
LOG_LEVEL=INFO
EOF
    umask 022
  fi
fi

step "4. PostgreSQL database and schema"
run runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -c \
  "DO \$\$BEGIN CREATE ROLE voicebot LOGIN PASSWORD '$DB_PASSWORD'; EXCEPTION WHEN duplicate_object THEN NULL; END\$\$;"
run runuser -u postgres -- sh -c "createdb -O voicebot voicebot 2>/dev/null || true"
run runuser -u postgres -- psql -v ON_ERROR_STOP=1 -d voicebot -f "$PROJECT/init_db.sql" -q
run runuser -u postgres -- psql -q -d voicebot -c "GRANT ALL ON ALL TABLES IN SCHEMA public TO voicebot; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO voicebot;"

step "5. Phrase cache (assets/cache)"
run "$PROJECT/.venv/bin/voicebot" cache

step "6. Firewall: AudioSocket (9090) and the HTTP API (8080) only from Asterisk"
if [ -n "$REMOTE_ASTERISK_IP" ]; then
  run ufw allow from "$REMOTE_ASTERISK_IP" to any port 9090 proto tcp
  run ufw allow from "$REMOTE_ASTERISK_IP" to any port 8080 proto tcp
  run ufw deny 9090/tcp
  run ufw deny 8080/tcp
else
  echo "REMOTE_ASTERISK_IP not given: no firewall rule written (do it before going live)"
fi

step "7. systemd service"
UNIT=/etc/systemd/system/voicebot.service
echo "+ write $UNIT"
if [ "$DRY_RUN" = 0 ]; then
  cat > "$UNIT" <<EOF
[Unit]
Description=Voicebot SAV (AudioSocket edge, STT, brain, TTS)
After=network-online.target postgresql.service

[Service]
Type=simple
WorkingDirectory=$PROJECT
ExecStart=$PROJECT/.venv/bin/voicebot up
Restart=always
RestartSec=5
KillSignal=SIGINT
TimeoutStopSec=30

[Install]
WantedBy=multi-user.target
EOF
fi
run systemctl daemon-reload
run systemctl enable --now voicebot.service

step "8. Nightly archive (stereo MP3s, raw audio deleted, retention): systemd timer at 3 am"
for unit in voicebot-archive.service voicebot-archive.timer; do echo "+ write /etc/systemd/system/$unit"; done
if [ "$DRY_RUN" = 0 ]; then
  cat > /etc/systemd/system/voicebot-archive.service <<EOF
[Unit]
Description=Voicebot SAV: archive calls as MP3, apply retention
After=voicebot.service

[Service]
Type=oneshot
WorkingDirectory=$PROJECT
ExecStart=$PROJECT/.venv/bin/voicebot archive --delete-raw --prune
EOF
  cat > /etc/systemd/system/voicebot-archive.timer <<EOF
[Unit]
Description=Archive calls every night

[Timer]
OnCalendar=*-*-* 03:00:00
Persistent=true

[Install]
WantedBy=timers.target
EOF
fi
run systemctl daemon-reload
run systemctl enable --now voicebot-archive.timer

step "Done"
cat <<EOF
AudioSocket:  ${SERVER_HOST_IP:-<this server>}:9090   (extension 777 on Asterisk: see asterisk_config.txt)
HTTP API:     http://${SERVER_HOST_IP:-<this server>}:8080/health   (token in .env: API_TOKEN)
Metrics:      http://${SERVER_HOST_IP:-<this server>}:9091/metrics
Logs:         journalctl -u voicebot -f
Archive:      logs/calls/YYYY/MM/DD/<call>.mp3 every night (journalctl -u voicebot-archive)
EOF
