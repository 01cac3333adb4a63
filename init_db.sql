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

-- Filled by the archiver from the CALLS stream; the stream sequence makes replays idempotent.
CREATE TABLE IF NOT EXISTS call_events (
    stream_seq  bigint PRIMARY KEY,
    call_id     uuid NOT NULL,
    subject     text NOT NULL,
    ts          timestamptz NOT NULL,
    body        jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_call ON call_events (call_id, stream_seq);

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
