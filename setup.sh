#!/usr/bin/env bash
# Production install of the voicebot's AI server on Debian 13 (the Asterisk server is elsewhere).
#
#   sudo ./setup.sh [options]          install, or bring an installation up to date (idempotent)
#   sudo ./setup.sh clean [options]    stop and remove what setup.sh installed (keeps .env and
#                                      the database unless --purge)
#   ./setup.sh --dry-run [...]         print every action, change nothing (no secret is shown)
#
# Options (each also read from the environment, for unattended runs):
#   --asterisk-ip IP     REMOTE_ASTERISK_IP: the only host that may reach 9090 and 8080 (required)
#   --server-ip IP       SERVER_HOST_IP: this server's address, for the summary
#   --yes                never ask: keys from the environment (empty: the offline provider),
#                        passwords generated (also when standard input is not a terminal)
#   --purge              with clean: also delete .env, the database and the NATS store
#   --no-start           write everything, start nothing
#   --root DIR           VOICEBOT_ROOT: install system files (units, state) under DIR instead
#                        of / (tests, packaging)
# Keys and passwords: DEEPGRAM_API_KEY, GROQ_API_KEY, OPENAI_API_KEY, DB_PASSWORD, API_TOKEN,
# GRAFANA_PASSWORD, PGADMIN_PASSWORD, CONSOLE_TOKEN, NATS_<USER>_PASSWORD (edge stt brain tts
# archiver tracer console admin). Asked without echo when missing and interactive, else
# generated (keys: left empty).
# They go to .env (mode 600) and nowhere else: never printed, not even by --dry-run.
# For development you need none of this: `make run`.
set -euo pipefail
umask 022

PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODE=install
DRY_RUN=0
ASSUME_YES=0
PURGE=0
START=1
ROOT=${VOICEBOT_ROOT:-}
REMOTE_ASTERISK_IP=${REMOTE_ASTERISK_IP:-}
SERVER_HOST_IP=${SERVER_HOST_IP:-}

usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    install) MODE=install ;;
    clean) MODE=clean ;;
    --dry-run) DRY_RUN=1 ;;
    --yes|-y) ASSUME_YES=1 ;;
    --purge) PURGE=1 ;;
    --no-start) START=0 ;;
    --asterisk-ip) REMOTE_ASTERISK_IP=${2:?--asterisk-ip needs an address}; shift ;;
    --server-ip) SERVER_HOST_IP=${2:?--server-ip needs an address}; shift ;;
    --root) ROOT=${2:?--root needs a folder}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ -t 0 ] || ASSUME_YES=1

# --- where things go ------------------------------------------------------------------------
ROOT=${ROOT%/}
VENV=${VOICEBOT_VENV:-$PROJECT/.venv}
ENV_FILE=$PROJECT/.env
UNIT_DIR=$ROOT/etc/systemd/system
STATE_DIR=$ROOT/var/lib/voicebot            # NATS store, joined model, phrase cache
MODEL_DIR=$STATE_DIR/models/whisper-base
CACHE_DIR=$STATE_DIR/cache
PYTHON=${PYTHON:-python3}
# The PostgreSQL superuser's psql (Debian: the postgres user over the local socket).
PSQL_ADMIN=${VOICEBOT_PSQL:-runuser -u postgres -- psql}
DB_HOST=${DB_HOST:-127.0.0.1}
DB_PORT=${DB_PORT:-5432}
DB_NAME=${DB_NAME:-voicebot}
DB_USER=${DB_USER:-voicebot}
AUDIOSOCKET_PORT=${AUDIOSOCKET_PORT:-9090}
HTTP_PORT=${HTTP_PORT:-8080}
NATS_PORT=${NATS_PORT:-4222}
SERVICES=(edge stt_worker brain tts_worker archiver console)
NATS_USERS=(edge stt brain tts archiver tracer console admin)
PACKAGES=(python3 python3-venv python3-pip make ufw postgresql curl espeak-ng mbrola mbrola-fr1 mbrola-fr4)

# --- output ---------------------------------------------------------------------------------
step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { echo "setup.sh: $*" >&2; exit 1; }

run() {  # print a command (no secrets in its arguments, ever), run it unless --dry-run
  echo "+ $*"
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

write_file() {  # write_file PATH MODE: stdin to PATH (printed as an action, content never)
  local path=$1 mode=$2
  echo "+ write $path (mode $mode)"
  if [ "$DRY_RUN" = 1 ]; then cat >/dev/null; return; fi
  mkdir -p "$(dirname "$path")"
  local tmp
  tmp=$(mktemp "$path.XXXXXX")
  chmod "$mode" "$tmp"
  cat >"$tmp"
  mv -f "$tmp" "$path"
}

need_root() {
  if [ "$DRY_RUN" = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then
    die "run as root (sudo ./setup.sh), or with --dry-run to see the steps"
  fi
}

# --- secrets --------------------------------------------------------------------------------
# Letters and digits, a letter first: nats-server parses a password taken from its environment
# as a configuration value ("5x..." is a bad number, "#" starts a comment).
generate() { printf 'v%s' "$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 31)"; }

env_value() {  # the value of KEY in the existing .env, if any
  [ -f "$ENV_FILE" ] || return 0
  sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1
}

secret() {  # secret VAR "question" generate|empty: environment, then .env, then ask/generate
  local var=$1 question=$2 fallback=$3 value
  value=${!var:-$(env_value "$var")}
  if [ -z "$value" ] && [ "$ASSUME_YES" = 0 ] && [ "$DRY_RUN" = 0 ]; then
    read -r -s -p "$question (empty: ${fallback/generate/generated}): " value </dev/tty
    echo
  fi
  if [ -z "$value" ] && [ "$fallback" = generate ]; then value=$(generate); fi
  printf -v "$var" '%s' "$value"
}

valid_ip() { [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || $1 =~ ^[0-9A-Fa-f:]+:[0-9A-Fa-f:]*$ ]]; }

# --- the steps ------------------------------------------------------------------------------
install_packages() {
  step "1. System packages"
  run apt-get update -q
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}"
}

install_venv() {
  step "2. Python environment ($VENV) and the project"
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import edge, brain, stt_worker, tts_worker, voicebot' 2>/dev/null; then
    note "already installed (to upgrade: $VENV/bin/pip install -e $PROJECT)"
    return
  fi
  run "$PYTHON" -m venv "$VENV"
  run "$VENV/bin/pip" install -q --upgrade pip
  run "$VENV/bin/pip" install -q -e "$PROJECT"
}

collect_settings() {
  step "3. Keys, passwords and the Asterisk address"
  if [ -z "$REMOTE_ASTERISK_IP" ]; then REMOTE_ASTERISK_IP=$(env_value ALLOWED_PEERS); fi
  if [ -z "$REMOTE_ASTERISK_IP" ] && [ "$ASSUME_YES" = 0 ] && [ "$DRY_RUN" = 0 ]; then
    read -r -p "IP of the remote Asterisk server: " REMOTE_ASTERISK_IP </dev/tty
  fi
  if [ -z "$REMOTE_ASTERISK_IP" ]; then
    if [ "$DRY_RUN" = 1 ]; then
      REMOTE_ASTERISK_IP="<asterisk-ip>"
    else
      die "the Asterisk server's address is required (--asterisk-ip or REMOTE_ASTERISK_IP): only it may reach 9090 and 8080"
    fi
  elif ! valid_ip "$REMOTE_ASTERISK_IP"; then
    die "not an IP address: $REMOTE_ASTERISK_IP"
  fi
  if [ -z "$SERVER_HOST_IP" ]; then SERVER_HOST_IP=$(hostname -I 2>/dev/null | awk '{print $1}'); fi
  secret DEEPGRAM_API_KEY "Deepgram API key" "empty: offline Whisper STT"
  secret GROQ_API_KEY "Groq API key" "empty: offline rule-based NLU"
  secret OPENAI_API_KEY "OpenAI API key" "empty: offline espeak-ng voice"
  secret DB_PASSWORD "PostgreSQL password of user $DB_USER" generate
  secret API_TOKEN "Bearer token the dialplan sends to register callers" generate
  secret GRAFANA_PASSWORD "Grafana admin password (docker compose)" generate
  secret PGADMIN_PASSWORD "PgAdmin password (docker compose)" generate
  secret CONSOLE_TOKEN "Token of the call console (agents: numbers masked)" generate
  local user var
  for user in "${NATS_USERS[@]}"; do
    var="NATS_${user^^}_PASSWORD"
    secret "$var" "NATS password of user $user" generate
  done
  note "Asterisk: $REMOTE_ASTERISK_IP; keys and passwords: from the environment, .env or generated (not shown)"
}

write_env() {
  step "4. Settings and secrets: $ENV_FILE"
  local user var
  {
    echo "# Written by setup.sh; every variable: .env.example. Secrets: this file only (mode 600)."
    echo "DEEPGRAM_API_KEY=$DEEPGRAM_API_KEY"
    echo "GROQ_API_KEY=$GROQ_API_KEY"
    echo "OPENAI_API_KEY=$OPENAI_API_KEY"
    echo "DB_PASSWORD=$DB_PASSWORD"
    echo "DATABASE_URL=postgresql://$DB_USER:$DB_PASSWORD@$DB_HOST:$DB_PORT/$DB_NAME"
    echo "API_TOKEN=$API_TOKEN"
    echo "GRAFANA_PASSWORD=$GRAFANA_PASSWORD"
    echo "PGADMIN_PASSWORD=$PGADMIN_PASSWORD"
    echo "CONSOLE_TOKEN=$CONSOLE_TOKEN"
    for user in "${NATS_USERS[@]}"; do
      var="NATS_${user^^}_PASSWORD"
      echo "$var=${!var}"
    done
    echo "NATS_URL=nats://127.0.0.1:$NATS_PORT"
    echo "ALLOWED_PEERS=$REMOTE_ASTERISK_IP"
    echo "AUDIOSOCKET_HOST=0.0.0.0"
    echo "AUDIOSOCKET_PORT=$AUDIOSOCKET_PORT"
    echo "HTTP_PORT=$HTTP_PORT"
    echo "CACHE_DIR=$CACHE_DIR"
    echo "WHISPER_CACHE_DIR=$MODEL_DIR"
    echo "LOG_LEVEL=INFO"
    # Settings the operator added by hand are kept.
    if [ -f "$ENV_FILE" ]; then
      grep -v -E '^(#|$|(DEEPGRAM_API_KEY|GROQ_API_KEY|OPENAI_API_KEY|DB_PASSWORD|DATABASE_URL|API_TOKEN|GRAFANA_PASSWORD|PGADMIN_PASSWORD|CONSOLE_TOKEN|NATS_[A-Z]+_PASSWORD|NATS_URL|ALLOWED_PEERS|AUDIOSOCKET_HOST|AUDIOSOCKET_PORT|HTTP_PORT|CACHE_DIR|WHISPER_CACHE_DIR|LOG_LEVEL)=)' "$ENV_FILE" || true
    fi
  } | write_file "$ENV_FILE" 600
}

init_database() {
  step "5. PostgreSQL: role $DB_USER, database $DB_NAME, schema (init_db.sql)"
  # The password travels on psql's standard input, never on a command line.
  echo "+ $PSQL_ADMIN -v ON_ERROR_STOP=1 (create or update role $DB_USER; password on stdin)"
  if [ "$DRY_RUN" = 0 ]; then
    local quoted=${DB_PASSWORD//\'/\'\'}
    $PSQL_ADMIN -q -v ON_ERROR_STOP=1 -d postgres >/dev/null <<SQL
DO \$\$BEGIN
  CREATE ROLE "$DB_USER" LOGIN;
EXCEPTION WHEN duplicate_object THEN NULL;
END\$\$;
ALTER ROLE "$DB_USER" LOGIN PASSWORD '$quoted';
SQL
  fi
  echo "+ $PSQL_ADMIN -d postgres: CREATE DATABASE $DB_NAME OWNER $DB_USER (if missing)"
  if [ "$DRY_RUN" = 0 ]; then
    if [ "$($PSQL_ADMIN -tA -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
      $PSQL_ADMIN -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE \"$DB_NAME\" OWNER \"$DB_USER\""
    fi
  fi
  run $PSQL_ADMIN -q -v ON_ERROR_STOP=1 -d "$DB_NAME" -f "$PROJECT/init_db.sql"
  run $PSQL_ADMIN -q -v ON_ERROR_STOP=1 -d "$DB_NAME" -c "GRANT ALL ON ALL TABLES IN SCHEMA public TO \"$DB_USER\"; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO \"$DB_USER\""
}

prepare_assets() {
  step "6. Offline model and phrase cache ($STATE_DIR)"
  run mkdir -p "$MODEL_DIR" "$CACHE_DIR" "$STATE_DIR/nats"
  # NATS keeps its store across restarts: a system user of its own owns it.
  if ! id voicebot-nats >/dev/null 2>&1; then
    run useradd --system --no-create-home --shell /usr/sbin/nologin voicebot-nats
  fi
  run chown voicebot-nats: "$STATE_DIR/nats"
  run "$VENV/bin/python" -c "from pathlib import Path; from stt_worker.model_store import ensure_model; ensure_model(Path('$MODEL_DIR'))"
  # Generated with the settings of .env (the OpenAI voice when its key is set).
  run env -C "$PROJECT" "$VENV/bin/voicebot" cache --cache-dir "$CACHE_DIR"
}

firewall() {
  step "7. Firewall: AudioSocket ($AUDIOSOCKET_PORT) and the HTTP API ($HTTP_PORT) only from $REMOTE_ASTERISK_IP"
  local port
  run ufw allow OpenSSH   # before enabling: never lock the operator out
  for port in "$AUDIOSOCKET_PORT" "$HTTP_PORT"; do
    run ufw allow proto tcp from "$REMOTE_ASTERISK_IP" to any port "$port"
    run ufw deny proto tcp to any port "$port"
  done
  # NATS, PostgreSQL and the metrics ports listen on loopback or stay closed: default deny.
  run ufw default deny incoming
  run ufw --force enable
}

# Every secret; each unit gets back only its own (as voicebot/secrets.py and docker-compose.yml).
ALL_SECRETS=(NATS_EDGE_PASSWORD NATS_STT_PASSWORD NATS_BRAIN_PASSWORD NATS_TTS_PASSWORD
  NATS_ARCHIVER_PASSWORD NATS_TRACER_PASSWORD NATS_CONSOLE_PASSWORD NATS_ADMIN_PASSWORD
  DATABASE_URL DB_PASSWORD DEEPGRAM_API_KEY GROQ_API_KEY OPENAI_API_KEY API_TOKEN
  GRAFANA_PASSWORD PGADMIN_PASSWORD CONSOLE_TOKEN CONSOLE_USERS)

own_secrets() {  # the secrets unit $1 may see
  case "$1" in
    edge) echo "NATS_EDGE_PASSWORD API_TOKEN" ;;
    stt_worker) echo "NATS_STT_PASSWORD DEEPGRAM_API_KEY" ;;
    brain) echo "NATS_BRAIN_PASSWORD GROQ_API_KEY DATABASE_URL" ;;
    tts_worker) echo "NATS_TTS_PASSWORD OPENAI_API_KEY" ;;
    archiver) echo "NATS_ARCHIVER_PASSWORD DATABASE_URL" ;;
    console) echo "NATS_CONSOLE_PASSWORD DATABASE_URL CONSOLE_TOKEN CONSOLE_USERS" ;;
    streams) echo "NATS_ADMIN_PASSWORD" ;;
    nats) echo "NATS_EDGE_PASSWORD NATS_STT_PASSWORD NATS_BRAIN_PASSWORD NATS_TTS_PASSWORD NATS_ARCHIVER_PASSWORD NATS_TRACER_PASSWORD NATS_CONSOLE_PASSWORD NATS_ADMIN_PASSWORD" ;;
  esac
}

unset_line() {  # UnsetEnvironment= every secret that is not unit $1's
  local keep drop=() var
  keep=" $(own_secrets "$1") "
  for var in "${ALL_SECRETS[@]}"; do
    [[ $keep == *" $var "* ]] || drop+=("$var")
  done
  echo "UnsetEnvironment=${drop[*]}"
}

service_unit() {  # service_unit NAME DESCRIPTION AFTER EXEC [EXTRA LINE]
  local name=$1 description=$2 after=$3 exec=$4 extra=${5:-}
  cat <<UNIT
[Unit]
Description=Voicebot SAV: $description
PartOf=voicebot.target
After=network-online.target postgresql.service voicebot-nats.service $after
Wants=network-online.target

[Service]
Type=simple
# Not the project folder: the service would read its .env, the others' secrets included.
WorkingDirectory=/
EnvironmentFile=$ENV_FILE
$(unset_line "$name")
Environment=PYTHONUNBUFFERED=1
ExecStart=$exec
DynamicUser=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
NoNewPrivileges=yes
Restart=always
RestartSec=2
TimeoutStopSec=30
UNIT
  if [ -n "$extra" ]; then printf '%s\n' "$extra"; fi
  printf '\n[Install]\nWantedBy=voicebot.target\n'
}

write_units() {
  step "8. systemd units ($UNIT_DIR): NATS, the streams, one unit per service, the nightly archive"
  write_file "$UNIT_DIR/voicebot.target" 644 <<UNIT
[Unit]
Description=Voicebot SAV (NATS, streams, edge, STT, brain, TTS, archiver, console, nightly archive)
Wants=voicebot-nats.service voicebot-streams.service voicebot-edge.service voicebot-stt_worker.service voicebot-brain.service voicebot-tts_worker.service voicebot-archiver.service voicebot-console.service voicebot-archive.timer

[Install]
WantedBy=multi-user.target
UNIT
  write_file "$UNIT_DIR/voicebot-nats.service" 644 <<UNIT
[Unit]
Description=Voicebot SAV: NATS JetStream (nats.conf, one user per service)
PartOf=voicebot.target
After=network-online.target

[Service]
Type=simple
WorkingDirectory=/
EnvironmentFile=$ENV_FILE
$(unset_line nats)
ExecStart=$VENV/bin/nats-server -c $PROJECT/nats.conf -js -a 127.0.0.1 -p $NATS_PORT -sd $STATE_DIR/nats
User=voicebot-nats
ProtectSystem=strict
ReadWritePaths=$STATE_DIR/nats
NoNewPrivileges=yes
Restart=always
RestartSec=2

[Install]
WantedBy=voicebot.target
UNIT
  service_unit streams "JetStream streams and claim consumers (once per start)" \
    "" "$VENV/bin/voicebot streams" \
    | sed -e 's/^Type=simple$/Type=oneshot\nRemainAfterExit=yes/' -e 's/^Restart=always$/Restart=on-failure/' \
    | write_file "$UNIT_DIR/voicebot-streams.service" 644
  local service after extra
  for service in "${SERVICES[@]}"; do
    after=voicebot-streams.service
    extra=""
    if [ "$service" = edge ]; then
      # The edge last (no call admitted that nobody serves); SCHED_RR pacing without root:
      # RLIMIT_RTPRIO lets the unprivileged user take it.
      after="$after voicebot-stt_worker.service voicebot-brain.service voicebot-tts_worker.service"
      extra="LimitRTPRIO=10"
    fi
    service_unit "$service" "$service" "$after" "$VENV/bin/python -m $service" "$extra" \
      | write_file "$UNIT_DIR/voicebot-$service.service" 644
  done
  service_unit archiver "nightly archive (stereo MP3, raw audio purged)" \
    voicebot-streams.service "$VENV/bin/voicebot archive --delete-raw --prune" "ReadWritePaths=$STATE_DIR" \
    | sed -e 's/^Type=simple$/Type=oneshot/' -e 's/^Restart=always$/Restart=no/' \
      -e '/^PartOf=/d' -e '/^\[Install\]$/,$d' \
    | write_file "$UNIT_DIR/voicebot-archive.service" 644
  write_file "$UNIT_DIR/voicebot-archive.timer" 644 <<UNIT
[Unit]
Description=Voicebot SAV: nightly archive at 03:00

[Timer]
OnCalendar=*-*-* 03:00:00
Persistent=true
RandomizedDelaySec=10min

[Install]
WantedBy=timers.target
UNIT
  run systemctl daemon-reload
}

start_and_check() {
  step "9. Start and check"
  if [ "$START" = 0 ]; then
    note "--no-start: nothing started (systemctl enable --now voicebot.target)"
    return
  fi
  run systemctl enable --now voicebot.target
  local checks=("edge ready|http://127.0.0.1:$HTTP_PORT/ready") variable default service port
  for service in "${SERVICES[@]}"; do
    case "$service" in
      edge) variable=METRICS_PORT; default=9091 ;;
      stt_worker) variable=STT_METRICS_PORT; default=9092 ;;
      brain) variable=BRAIN_METRICS_PORT; default=9093 ;;
      tts_worker) variable=TTS_METRICS_PORT; default=9094 ;;
      console) variable=CONSOLE_METRICS_PORT; default=9097 ;;
    esac
    port=${!variable:-$(env_value "$variable")}
    checks+=("$service health|http://127.0.0.1:${port:-$default}/health")
  done
  local check name url i
  for check in "${checks[@]}"; do
    name=${check%%|*}
    url=${check#*|}
    echo "+ wait for $url ($name, 90 s at most)"
    if [ "$DRY_RUN" = 1 ]; then continue; fi
    for i in $(seq 1 180); do
      if curl -fsS --max-time 2 "$url" >/dev/null 2>&1; then break; fi
      if [ "$i" = 180 ]; then die "$name: no answer from $url after 90 s: journalctl -u 'voicebot-*' -n 50"; fi
      sleep 0.5
    done
  done
  note "every service answers: ready"
}

summary() {
  step "Done"
  cat <<EOF
AudioSocket:  ${SERVER_HOST_IP:-<this server>}:$AUDIOSOCKET_PORT   (extension 777 on Asterisk: asterisk_config.txt)
HTTP API:     http://${SERVER_HOST_IP:-<this server>}:$HTTP_PORT/ready   (callers registered by $REMOTE_ASTERISK_IP with API_TOKEN)
Metrics:      127.0.0.1:9091 edge, 9092 STT, 9093 brain, 9094 TTS, 9097 console (/metrics and /health)
Console:      http://${SERVER_HOST_IP:-<this server>}:${CONSOLE_PORT:-8090}/  (Basic auth: any user, CONSOLE_TOKEN of .env as password;
              named users and supervisors: CONSOLE_USERS; the firewall keeps the port closed until you
              open it to your support network: ufw allow proto tcp from NET to any port ${CONSOLE_PORT:-8090})
Secrets:      $ENV_FILE (mode 600)
Logs:         journalctl -u 'voicebot-*' -f
Watch calls:  cd $PROJECT && $VENV/bin/voicebot trace
EOF
}

clean() {
  step "Removing the voicebot's services, units, firewall rules and generated files"
  run systemctl disable --now voicebot.target voicebot-archive.timer
  local unit
  for unit in voicebot.target voicebot-nats.service voicebot-streams.service \
      voicebot-edge.service voicebot-stt_worker.service voicebot-brain.service \
      voicebot-tts_worker.service voicebot-archiver.service voicebot-console.service \
      voicebot-archive.service voicebot-archive.timer; do
    run rm -f "$UNIT_DIR/$unit"
  done
  run systemctl daemon-reload
  local port
  for port in "$AUDIOSOCKET_PORT" "$HTTP_PORT"; do
    if [ -n "$REMOTE_ASTERISK_IP" ]; then
      run ufw delete allow proto tcp from "$REMOTE_ASTERISK_IP" to any port "$port"
    fi
    run ufw delete deny proto tcp to any port "$port"
  done
  run rm -rf "$VENV" "$CACHE_DIR" "$MODEL_DIR"
  if [ "$PURGE" = 1 ]; then
    run rm -rf "$STATE_DIR"
    if id voicebot-nats >/dev/null 2>&1; then run userdel voicebot-nats; fi
    run rm -f "$ENV_FILE"
    run $PSQL_ADMIN -q -d postgres -c "DROP DATABASE IF EXISTS \"$DB_NAME\""
    run $PSQL_ADMIN -q -d postgres -c "DROP ROLE IF EXISTS \"$DB_USER\""
  else
    note "kept: $ENV_FILE, the database $DB_NAME and the NATS store (--purge removes them)"
  fi
}

main() {
  need_root
  [ "$DRY_RUN" = 1 ] && echo "Dry run: every action is printed, nothing is changed."
  if [ "$MODE" = clean ]; then
    if [ -z "$REMOTE_ASTERISK_IP" ]; then REMOTE_ASTERISK_IP=$(env_value ALLOWED_PEERS); fi
    clean
    return
  fi
  install_packages
  install_venv
  collect_settings
  write_env
  init_database
  prepare_assets
  firewall
  write_units
  start_and_check
  summary
}

main
