CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    balance_cents bigint NOT NULL DEFAULT 0 CHECK (balance_cents >= 0)
);
CREATE TABLE transfers (
    id bigserial PRIMARY KEY,
    from_id bigint NOT NULL REFERENCES accounts,
    to_id bigint NOT NULL REFERENCES accounts,
    cents bigint NOT NULL CHECK (cents > 0),
    at timestamptz NOT NULL DEFAULT now()
);
