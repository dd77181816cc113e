-- CubeOS store, version 1: the tables, indexes and seed data of the original schema
-- document (03_DATABASE_SCHEMA.md), plus system_state.schema_version, which every
-- later migration sets to its own number.

CREATE TABLE apps (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT UNIQUE NOT NULL,
    display_name    TEXT NOT NULL,
    description     TEXT DEFAULT '',
    type            TEXT NOT NULL DEFAULT 'user',
    category        TEXT DEFAULT 'other',
    source          TEXT DEFAULT 'custom',
    store_id        TEXT DEFAULT NULL,
    compose_path    TEXT NOT NULL,
    data_path       TEXT DEFAULT '',
    enabled         BOOLEAN DEFAULT TRUE,
    tor_enabled     BOOLEAN DEFAULT FALSE,
    vpn_enabled     BOOLEAN DEFAULT FALSE,
    icon_url        TEXT DEFAULT '',
    version         TEXT DEFAULT '',
    homepage        TEXT DEFAULT '',
    created_at      DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at      DATETIME DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX idx_apps_name ON apps(name);
CREATE INDEX idx_apps_type ON apps(type);
CREATE INDEX idx_apps_enabled ON apps(enabled);

CREATE TABLE port_allocations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id          INTEGER NOT NULL,
    port            INTEGER NOT NULL,
    protocol        TEXT DEFAULT 'tcp',
    description     TEXT DEFAULT '',
    is_primary      BOOLEAN DEFAULT FALSE,
    created_at      DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (app_id) REFERENCES apps(id) ON DELETE CASCADE,
    UNIQUE(port, protocol)
);
CREATE INDEX idx_ports_app ON port_allocations(app_id);
CREATE INDEX idx_ports_port ON port_allocations(port);

CREATE TABLE fqdns (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id          INTEGER NOT NULL,
    fqdn            TEXT UNIQUE NOT NULL,
    subdomain       TEXT NOT NULL,
    backend_port    INTEGER NOT NULL,
    ssl_enabled     BOOLEAN DEFAULT FALSE,
    npm_proxy_id    INTEGER DEFAULT NULL,
    created_at      DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (app_id) REFERENCES apps(id) ON DELETE CASCADE
);
CREATE INDEX idx_fqdns_app ON fqdns(app_id);
CREATE INDEX idx_fqdns_subdomain ON fqdns(subdomain);

CREATE TABLE profiles (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT UNIQUE NOT NULL,
    display_name    TEXT NOT NULL,
    description     TEXT DEFAULT '',
    is_active       BOOLEAN DEFAULT FALSE,
    is_system       BOOLEAN DEFAULT FALSE,
    created_at      DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at      DATETIME DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE profile_apps (
    profile_id      INTEGER NOT NULL,
    app_id          INTEGER NOT NULL,
    enabled         BOOLEAN DEFAULT TRUE,
    PRIMARY KEY (profile_id, app_id),
    FOREIGN KEY (profile_id) REFERENCES profiles(id) ON DELETE CASCADE,
    FOREIGN KEY (app_id) REFERENCES apps(id) ON DELETE CASCADE
);
CREATE INDEX idx_profile_apps_profile ON profile_apps(profile_id);

CREATE TABLE system_state (
    key             TEXT PRIMARY KEY,
    value           TEXT NOT NULL,
    updated_at      DATETIME DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE app_health (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id          INTEGER UNIQUE NOT NULL,
    check_endpoint  TEXT DEFAULT '',
    check_interval  INTEGER DEFAULT 30,
    check_timeout   INTEGER DEFAULT 10,
    max_retries     INTEGER DEFAULT 3,
    alert_after     INTEGER DEFAULT 300,
    FOREIGN KEY (app_id) REFERENCES apps(id) ON DELETE CASCADE
);

CREATE TABLE network_config (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    mode            TEXT DEFAULT 'offline',
    wifi_ssid       TEXT DEFAULT '',
    wifi_password   TEXT DEFAULT '',
    eth_interface   TEXT DEFAULT 'eth0',
    wifi_ap_interface TEXT DEFAULT 'wlan0',
    wifi_client_interface TEXT DEFAULT 'wlan1',
    updated_at      DATETIME DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE vpn_configs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT UNIQUE NOT NULL,
    type            TEXT NOT NULL,
    config_path     TEXT NOT NULL,
    is_active       BOOLEAN DEFAULT FALSE,
    auto_connect    BOOLEAN DEFAULT FALSE,
    created_at      DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at      DATETIME DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE mounts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT UNIQUE NOT NULL,
    type            TEXT NOT NULL,
    remote_path     TEXT NOT NULL,
    local_path      TEXT NOT NULL,
    username        TEXT DEFAULT '',
    password        TEXT DEFAULT '',
    options         TEXT DEFAULT '',
    auto_mount      BOOLEAN DEFAULT FALSE,
    is_mounted      BOOLEAN DEFAULT FALSE,
    created_at      DATETIME DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE backups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT UNIQUE NOT NULL,
    destination     TEXT NOT NULL,
    include_apps    TEXT DEFAULT '*',
    schedule        TEXT DEFAULT '',
    retention_days  INTEGER DEFAULT 30,
    last_run        DATETIME,
    last_status     TEXT DEFAULT '',
    created_at      DATETIME DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE users (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    username        TEXT UNIQUE NOT NULL,
    password_hash   TEXT NOT NULL,
    role            TEXT DEFAULT 'admin',
    created_at      DATETIME DEFAULT CURRENT_TIMESTAMP,
    updated_at      DATETIME DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE preferences (
    key             TEXT PRIMARY KEY,
    value           TEXT NOT NULL,
    updated_at      DATETIME DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE nodes (
    id              TEXT PRIMARY KEY,
    hostname        TEXT NOT NULL,
    role            TEXT DEFAULT 'worker',
    status          TEXT DEFAULT 'unknown',
    ip_address      TEXT,
    joined_at       DATETIME DEFAULT CURRENT_TIMESTAMP,
    last_seen       DATETIME DEFAULT CURRENT_TIMESTAMP
);

INSERT INTO profiles (name, display_name, description, is_system) VALUES
    ('full', 'Full', 'All services enabled', TRUE),
    ('minimal', 'Minimal', 'Only essential services', TRUE),
    ('offline', 'Offline', 'Optimized for offline use', TRUE);

INSERT INTO system_state (key, value) VALUES
    ('setup_complete', 'false'),
    ('swarm_initialized', 'false'),
    ('last_boot', ''),
    ('version', '1.0.0'),
    ('domain', 'cubeos.cube'),
    ('gateway_ip', '10.42.24.1'),
    ('subnet', '10.42.24.0/24'),
    ('schema_version', '1');

INSERT INTO network_config (id, mode) VALUES (1, 'offline');
