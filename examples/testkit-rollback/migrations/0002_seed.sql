INSERT INTO accounts (email, balance_cents) VALUES
    ('alice@example.com', 10000),
    ('bob@example.com', 5000),
    ('carol@example.com', 0);
