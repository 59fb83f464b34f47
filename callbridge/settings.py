"""callbridge settings: one file, driven by environment variables (see .env.example).

Embedded defaults need nothing else: SQLite and the in-memory channel layer under
CALLBRIDGE_DATA_DIR. DATABASE_URL selects PostgreSQL, REDIS_URL the Redis channel layer.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from callbridge.env import (
    env_bool,
    env_choice,
    env_int,
    env_ip_list,
    env_list,
    env_network_list,
    env_origin_list,
    env_rate,
    env_str,
    env_url_list,
    load_dotenv,
    persistent_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(BASE_DIR / ".env")

DATA_DIR = Path(env_str("CALLBRIDGE_DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DEBUG", False)
# A stable key without configuration: generated once into the data dir. Several hosts
# sharing a database must set SECRET_KEY explicitly to the same value.
SECRET_KEY = env_str("SECRET_KEY") or persistent_secret(DATA_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",
    "calls",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language: `?lang=`, then Accept-Language, then CALLBRIDGE_DEFAULT_LANGUAGE.
    "calls.pages.language.PageLanguageMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into its 429 page
]

ROOT_URLCONF = "callbridge.urls"
ASGI_APPLICATION = "callbridge.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "calls.pages.language.page_language",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
_database_url = env_str("DATABASE_URL")
if _database_url:
    # A connection pool per process (psycopg_pool, Django's "pool" option). Each HTTP
    # request runs in a thread of its own (Django's per-request thread-sensitive context),
    # so persistent per-thread connections were never reused: a burst of call set-ups
    # opened one PostgreSQL connection per request — a server process forked and
    # authenticated each time — until PostgreSQL refused more clients.
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=0)}
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env_int("CALLBRIDGE_DATABASE_POOL_SIZE", 20, minimum=2, maximum=1000),
        "timeout": 20,  # s a request waits for a free connection (then HANDLER_ERROR)
    }
else:
    DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)  # SQLite creates no folders
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA_DIR / "db.sqlite3"),
            "OPTIONS": {
                # IMMEDIATE takes the write lock at BEGIN: concurrent transitions queue
                # instead of failing with "database is locked" on lock upgrade.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not shared-cache memory: async tests write from several threads.
            "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# HTTP requests whose Django part runs at once (callbridge/http_handler.py); more wait.
CALLBRIDGE_HTTP_THREADS = env_int("CALLBRIDGE_HTTP_THREADS", 8, minimum=1, maximum=1000)

# --- Channel layer ----------------------------------------------------------------------
# Messages one consumer's channel may hold before the layer silently drops more (its
# group_send skips a full channel). The default, 100, lost call events: one event loop
# iteration can fan out a burst of calls to every operator socket before any consumer
# runs (bench/signaling_load.py: 300 sockets lost ~40 % of their events).
CHANNEL_CAPACITY = 10_000
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    try:
        import channels_redis  # noqa: F401
    except ImportError:
        raise ImproperlyConfigured(
            "REDIS_URL is set but channels-redis is not installed: pip install 'callbridge[redis]'"
        ) from None
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, exactly as long as
            # channels-redis blocks in BZPOPMIN: every idle receive then raced it and
            # failed ("Timeout reading from …"). Reads may take longer than the block.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "capacity": CHANNEL_CAPACITY,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "callbridge.channel_layer.EmbeddedChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY},
        }
    }

# --- Auth, i18n, static -----------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The languages the pages ship complete translations for (calls/locale, docs/pages.md).
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("es", "Español")]
# The integrator's default: a visitor whose browser asks for none of LANGUAGES gets it.
LANGUAGE_CODE = env_choice(
    "CALLBRIDGE_DEFAULT_LANGUAGE", "en", tuple(code for code, _ in LANGUAGES)
)
LOCALE_PATHS = [BASE_DIR / "calls" / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "frontend"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media"))).resolve()
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "callbridge.storage.StaticStorage"},
}
# Request bodies: SDP offers are a few KiB; nothing legitimate comes near this.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int(
    "CALLBRIDGE_MAX_BODY_BYTES", 256 * 1024, minimum=16 * 1024, maximum=16 * 1024 * 1024
)

# --- Security behind TLS ----------------------------------------------------------------
if env_bool("CALLBRIDGE_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- CORS (integrators' pages on other origins) -----------------------------------------
CORS_ALLOWED_ORIGINS = env_list("CALLBRIDGE_CORS_ORIGINS")
CORS_URLS_REGEX = r"^/(api|call)/.*$"
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "token", "x-csrftoken")

# --- Embedding (integrators' pages framing the end-user page: docs/embedding.md) ----------
# The only origins that may frame /talk/embed/ (its CSP frame-ancestors), hand it a
# session token and hear its events. Empty: the page cannot be framed at all. Every other
# page keeps X-Frame-Options: DENY (the admin is never frameable).
CALLBRIDGE_EMBED_ORIGINS = env_origin_list("CALLBRIDGE_EMBED_ORIGINS")
# The end-user page's preflight (microphone, echo round trip, TURN; the report kept with
# the session): before_call runs it once when the page is ready; on_demand only when asked.
CALLBRIDGE_PREFLIGHT = env_choice(
    "CALLBRIDGE_PREFLIGHT", "before_call", ("before_call", "on_demand")
)

# --- REST framework ---------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "calls.api.throttling.ClientIpGate",  # the per-IP limit, before any token lookup
        "calls.api.authentication.BearerTokenAuthentication",
        "calls.api.authentication.StaffSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["calls.api.throttling.PrincipalRateThrottle"],
    # The client is REMOTE_ADDR, never a client-supplied X-Forwarded-For: behind trusted
    # proxies, callbridge.client_address has already put the real client address there.
    "NUM_PROXIES": 0,
    "DEFAULT_THROTTLE_RATES": {
        "principal": env_rate("CALLBRIDGE_RATE_LIMIT_PRINCIPAL", "600/min"),
        "client_ip": env_rate("CALLBRIDGE_RATE_LIMIT_IP", "1200/min"),
    },
    "EXCEPTION_HANDLER": "calls.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "callbridge API",
    "DESCRIPTION": "Sessions, calls and WebRTC signaling. Errors: "
    '{"code", "message", "recoverable"} with the codes of the public contract.',
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "OfferTypeEnum": ["offer"],
        "AnswerTypeEnum": ["answer"],
        "CallbackStateEnum": "calls.models.callback.CallbackState",
        "SupervisorModeEnum": "calls.models.call.SupervisorMode",
        "ModeEnum": "calls.models.call.CallMode",  # the name it had before SupervisorMode
    },
    "AUTHENTICATION_WHITELIST": [  # ClientIpGate is a rate limit, not a credential
        "calls.api.authentication.BearerTokenAuthentication",
        "calls.api.authentication.StaffSessionAuthentication",
    ],
}

# --- callbridge -------------------------------------------------------------------------
# Public base URL used in links handed to end users (e.g. https://calls.example.com).
# Empty: built from the request's host.
CALLBRIDGE_PUBLIC_URL = env_str("CALLBRIDGE_PUBLIC_URL").rstrip("/")
# Anyone may open /talk/ and call (an anonymous session is made for them). Off by default;
# `make run` turns it on for the demo.
CALLBRIDGE_PUBLIC_LOBBY = env_bool("CALLBRIDGE_PUBLIC_LOBBY", False)
CALLBRIDGE_RING_TIMEOUT_S = env_int("CALLBRIDGE_RING_TIMEOUT_S", 45, minimum=1, maximum=3600)
# The audio library file (its name) a held caller hears when their queue names no hold or
# waiting audio, and on calls without a queue (outbound); empty: silence (calls.hold).
CALLBRIDGE_HOLD_AUDIO = env_str("CALLBRIDGE_HOLD_AUDIO", "")
# Whether the end user of a call is told when a supervisor joins, changes mode or leaves
# it (`supervisor.*` on their socket, a line on their page; calls.supervision).
CALLBRIDGE_TELL_USER_SUPERVISOR = env_bool("CALLBRIDGE_TELL_USER_SUPERVISOR", True)
CALLBRIDGE_AWAY_AFTER_MISSES = env_int("CALLBRIDGE_AWAY_AFTER_MISSES", 3, minimum=1, maximum=100)
# Queue statistics: a call answered within this many seconds of joining its queue is
# within the service level (docs/queues.md#statistics).
CALLBRIDGE_SERVICE_LEVEL_S = env_int("CALLBRIDGE_SERVICE_LEVEL_S", 20, minimum=1, maximum=3600)
# Call notes and disposition (calls/notes.py): after a call ends, the operator who handled
# it may still edit them for this long, or for their queue's wrap-up if that is longer.
CALLBRIDGE_NOTES_EDITABLE_S = env_int(
    "CALLBRIDGE_NOTES_EDITABLE_S", 3600, minimum=0, maximum=30 * 86400
)
# The longest notes one call may carry (characters).
CALLBRIDGE_NOTES_MAX_CHARS = env_int(
    "CALLBRIDGE_NOTES_MAX_CHARS", 4000, minimum=100, maximum=100_000
)
# Voicemail (a queue's overflow `voicemail`, docs/queues.md#voicemail): seconds a caller has
# to choose (leave a message, hang up) before the call ends `no_operator`; the notice shown
# before "Leave a message" (pressing it is the consent to be recorded) and its version.
CALLBRIDGE_VOICEMAIL_CHOICE_S = env_int(
    "CALLBRIDGE_VOICEMAIL_CHOICE_S", 60, minimum=5, maximum=3600
)
CALLBRIDGE_VOICEMAIL_NOTICE_VERSION = env_str("CALLBRIDGE_VOICEMAIL_NOTICE_VERSION", "1")
CALLBRIDGE_VOICEMAIL_NOTICE_TEXT = env_str(
    "CALLBRIDGE_VOICEMAIL_NOTICE_TEXT",
    "Nobody can take your call right now. You may leave a message: it is recorded, kept "
    'for records purposes and only heard by authorised staff. Pressing "Leave a message" '
    "is your agreement to be recorded.",
)
CALLBRIDGE_MEDIA_GRACE_S = env_int("CALLBRIDGE_MEDIA_GRACE_S", 60, minimum=1, maximum=3600)
CALLBRIDGE_ICE_TIMEOUT_S = env_int("CALLBRIDGE_ICE_TIMEOUT_S", 20, minimum=1, maximum=300)
# Seconds between two quality samples of a leg (loss, jitter, RTT → MOS; docs/quality.md).
CALLBRIDGE_QUALITY_INTERVAL_S = env_int("CALLBRIDGE_QUALITY_INTERVAL_S", 5, minimum=1, maximum=60)
# Local addresses the media worker advertises as ICE host candidates (comma-separated IPs).
# Empty: every interface except loopback (aioice's default).
CALLBRIDGE_ICE_HOST_ADDRESSES = env_ip_list("CALLBRIDGE_ICE_HOST_ADDRESSES")
# --- Remote ICE candidates (issue 12 item 7; calls/media/candidates.py) ---
# At most this many distinct UDP destinations per peer connection, SDP and trickled together:
# each is probed with STUN, so an unbounded list makes the server a scanner.
CALLBRIDGE_ICE_MAX_REMOTE_CANDIDATES = env_int(
    "CALLBRIDGE_ICE_MAX_REMOTE_CANDIDATES", 20, minimum=1, maximum=200
)
# Only candidates in these networks (comma-separated CIDRs) are used. Empty: any unicast.
CALLBRIDGE_ICE_ALLOWED_NETWORKS = env_network_list("CALLBRIDGE_ICE_ALLOWED_NETWORKS")
# --- end of remote ICE candidates ---
# The in-process media worker's name (its channel is "media.<name>").
CALLBRIDGE_MEDIA_WORKER_NAME = env_str("CALLBRIDGE_MEDIA_WORKER_NAME", "embedded")
# Each serving process runs a media worker of its own (the default). Off: calls go to
# `manage.py mediaworker` processes, which need the Redis channel layer.
CALLBRIDGE_EMBEDDED_MEDIA_WORKER = env_bool("CALLBRIDGE_EMBEDDED_MEDIA_WORKER", True)
if not CALLBRIDGE_EMBEDDED_MEDIA_WORKER and not REDIS_URL:
    raise ImproperlyConfigured(
        "CALLBRIDGE_EMBEDDED_MEDIA_WORKER=false needs REDIS_URL: media workers in other "
        "processes are reached through the Redis channel layer"
    )
# Seconds without a heartbeat after which a media worker counts as dead: its calls end
# with `media_failure` and new calls avoid it. Workers beat every second.
CALLBRIDGE_MEDIA_WORKER_TIMEOUT_S = env_int(
    "CALLBRIDGE_MEDIA_WORKER_TIMEOUT_S", 5, minimum=2, maximum=300
)
# "forward": Opus is relayed between legs as it came, decoded only for recordings and
# mixes. "decode": every frame is decoded and re-encoded (stock aiortc; a baseline).
CALLBRIDGE_MEDIA_PATH = env_choice("CALLBRIDGE_MEDIA_PATH", "forward", ("forward", "decode"))
# The event loop of manage.py's processes (serve, mediaworker): uvloop, or Python's own.
CALLBRIDGE_EVENT_LOOP = env_choice("CALLBRIDGE_EVENT_LOOP", "uvloop", ("uvloop", "asyncio"))
CALLBRIDGE_WS_MAX_MESSAGE_BYTES = env_int(
    "CALLBRIDGE_WS_MAX_MESSAGE_BYTES", 64 * 1024, minimum=4096, maximum=1024 * 1024
)
# WebSocket rate limits (RATE_LIMITED): per client IP for handshakes and for messages sent
# before signing in; per socket and per principal (token, staff user) afterwards.
CALLBRIDGE_WS_RATE_LIMIT_IP = env_rate("CALLBRIDGE_WS_RATE_LIMIT_IP", "1200/min")
CALLBRIDGE_WS_RATE_LIMIT_SOCKET = env_rate("CALLBRIDGE_WS_RATE_LIMIT_SOCKET", "300/min")
CALLBRIDGE_WS_RATE_LIMIT_PRINCIPAL = env_rate("CALLBRIDGE_WS_RATE_LIMIT_PRINCIPAL", "1200/min")
CALLBRIDGE_SESSION_TTL_S = env_int("CALLBRIDGE_SESSION_TTL_S", 3600, minimum=60)
CALLBRIDGE_SESSION_MAX_TTL_S = env_int("CALLBRIDGE_SESSION_MAX_TTL_S", 7 * 86400, minimum=60)
if CALLBRIDGE_SESSION_TTL_S > CALLBRIDGE_SESSION_MAX_TTL_S:
    raise ImproperlyConfigured("CALLBRIDGE_SESSION_TTL_S exceeds CALLBRIDGE_SESSION_MAX_TTL_S")

# ICE: nothing by default (LAN / localhost). Never fall back to a public STUN server.
# STUN_URLS: the media worker's and the clients'; CLIENT_STUN_URLS: handed to clients only
# (what WaGo returns, e.g. a public STUN server the server itself need not ask).
CALLBRIDGE_STUN_URLS = env_url_list("CALLBRIDGE_STUN_URLS", ("stun", "stuns"))
CALLBRIDGE_CLIENT_STUN_URLS = env_url_list("CALLBRIDGE_CLIENT_STUN_URLS", ("stun", "stuns"))
CALLBRIDGE_TURN_URLS = env_url_list("CALLBRIDGE_TURN_URLS", ("turn", "turns"))
CALLBRIDGE_TURN_SECRET = env_str("CALLBRIDGE_TURN_SECRET")
CALLBRIDGE_TURN_TTL = env_int("CALLBRIDGE_TURN_TTL", 86400, minimum=60, maximum=7 * 86400)
if bool(CALLBRIDGE_TURN_URLS) != bool(CALLBRIDGE_TURN_SECRET):
    raise ImproperlyConfigured(
        "CALLBRIDGE_TURN_URLS and CALLBRIDGE_TURN_SECRET go together: set both or neither"
    )

# Recording consent: whose consent a recording needs (every human party, the end user, none),
# and the text people agree to. Changing the text means a new version: older consents
# then no longer count.
CALLBRIDGE_RECORDING_CONSENT = env_choice(
    "CALLBRIDGE_RECORDING_CONSENT", "all", ("all", "user", "none")
)
# Days a finished recording's file is kept (0: forever); `manage.py purge_recordings`
# deletes older files and keeps a tombstone (hash, size, when and why).
CALLBRIDGE_RECORDING_RETENTION_DAYS = env_int("CALLBRIDGE_RECORDING_RETENTION_DAYS", 0, minimum=0)
CALLBRIDGE_CONSENT_POLICY_VERSION = env_str("CALLBRIDGE_CONSENT_POLICY_VERSION", "1")
CALLBRIDGE_CONSENT_TEXT = env_str(
    "CALLBRIDGE_CONSENT_TEXT",
    "This call may be recorded. The recording is kept for quality and records purposes and "
    "is only heard by authorised staff. Do you agree to be recorded?",
)

# --- Resource caps (RATE_LIMITED with details.limit / details.max; docs/configuration.md) ---
# Open calls (ringing or active) an end-user session may hold; each has at most one leg of
# the session, so this also caps its server peer connections.
CALLBRIDGE_LIMIT_OPEN_CALLS_PER_SESSION = env_int(
    "CALLBRIDGE_LIMIT_OPEN_CALLS_PER_SESSION", 3, minimum=1, maximum=1000
)
# Open calls an operator credential (staff user, API token) has placed or answered.
CALLBRIDGE_LIMIT_OPEN_CALLS_PER_OPERATOR = env_int(
    "CALLBRIDGE_LIMIT_OPEN_CALLS_PER_OPERATOR", 100, minimum=1, maximum=100_000
)
# Open echo (test) calls per credential of any kind.
CALLBRIDGE_LIMIT_ECHO_CALLS = env_int("CALLBRIDGE_LIMIT_ECHO_CALLS", 2, minimum=1, maximum=1000)
# Legs with a server peer connection (media connecting, connected or disconnected) on open
# calls, per operator credential.
CALLBRIDGE_LIMIT_MEDIA_LEGS_PER_OPERATOR = env_int(
    "CALLBRIDGE_LIMIT_MEDIA_LEGS_PER_OPERATOR", 100, minimum=1, maximum=100_000
)
# Open WebSockets (/ws/signal and /ws/operator together) per client address and per
# signed-in credential, counted in each serving process.
CALLBRIDGE_LIMIT_SOCKETS_PER_IP = env_int(
    "CALLBRIDGE_LIMIT_SOCKETS_PER_IP", 100, minimum=1, maximum=100_000
)
CALLBRIDGE_LIMIT_SOCKETS_PER_CREDENTIAL = env_int(
    "CALLBRIDGE_LIMIT_SOCKETS_PER_CREDENTIAL", 20, minimum=1, maximum=100_000
)
# Seconds a /ws/signal socket may stay open without signing in (register or offer with a
# valid token); then error UNAUTHORIZED and close 4401.
CALLBRIDGE_WS_SIGN_IN_DEADLINE_S = env_int(
    "CALLBRIDGE_WS_SIGN_IN_DEADLINE_S", 10, minimum=1, maximum=300
)
# New anonymous sessions the public lobby (CALLBRIDGE_PUBLIC_LOBBY) makes per client address.
CALLBRIDGE_LIMIT_LOBBY_SESSIONS_PER_IP = env_rate(
    "CALLBRIDGE_LIMIT_LOBBY_SESSIONS_PER_IP", "10/hour"
)

# --- Client address, private files, admin login (issue 12) ------------------------------
# Addresses/networks of the reverse proxies in front (comma-separated, e.g. 127.0.0.1 or
# 10.0.0.0/8). Only a connection from one of them may name the client in X-Forwarded-For,
# read from the right (callbridge.client_address). Empty: no header is believed.
CALLBRIDGE_TRUSTED_PROXIES = env_network_list("CALLBRIDGE_TRUSTED_PROXIES")
# Webhooks (calls.webhooks, docs/integrations.md): each POST's timeout; retries back off
# exponentially from BASE_MS (with jitter) up to MAX_S apart, for RETRY_HOURS (at least 24)
# before a delivery is given up; CONCURRENCY requests in flight per process; RECHECK_S: how
# often an idle sender looks for due retries and other processes' events.
CALLBRIDGE_WEBHOOK_TIMEOUT_S = env_int("CALLBRIDGE_WEBHOOK_TIMEOUT_S", 10, minimum=1, maximum=60)
CALLBRIDGE_WEBHOOK_RETRY_BASE_MS = env_int(
    "CALLBRIDGE_WEBHOOK_RETRY_BASE_MS", 5000, minimum=10, maximum=600_000
)
CALLBRIDGE_WEBHOOK_RETRY_MAX_S = env_int(
    "CALLBRIDGE_WEBHOOK_RETRY_MAX_S", 3600, minimum=1, maximum=86400
)
CALLBRIDGE_WEBHOOK_RETRY_HOURS = env_int(
    "CALLBRIDGE_WEBHOOK_RETRY_HOURS", 24, minimum=24, maximum=14 * 24
)
CALLBRIDGE_WEBHOOK_CONCURRENCY = env_int(
    "CALLBRIDGE_WEBHOOK_CONCURRENCY", 8, minimum=1, maximum=200
)
CALLBRIDGE_WEBHOOK_RECHECK_S = env_int("CALLBRIDGE_WEBHOOK_RECHECK_S", 5, minimum=1, maximum=300)
# Endpoints may resolve to private, loopback or link-local addresses only when this is on
# (an admin could otherwise point callbridge at internal services: SSRF).
CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE = env_bool("CALLBRIDGE_WEBHOOK_ALLOW_PRIVATE", False)

# --- Transcripts (docs/transcripts.md; needs the `callbridge[transcribe]` extra) ---
# Off by default. On: every finished recording whose consents allow it is transcribed in
# the background by the serving processes, at most CONCURRENCY at once per host, each in
# a niced child process (one CPU core, ~320 MB), retried up to MAX_ATTEMPTS times; a job
# whose host stops renewing its lease for LEASE_S is taken again. POLL_S: how often a
# host looks for work.
CALLBRIDGE_TRANSCRIBE = env_bool("CALLBRIDGE_TRANSCRIBE", False)
CALLBRIDGE_TRANSCRIBE_CONCURRENCY = env_int(
    "CALLBRIDGE_TRANSCRIBE_CONCURRENCY", 1, minimum=1, maximum=64
)
CALLBRIDGE_TRANSCRIBE_MAX_ATTEMPTS = env_int(
    "CALLBRIDGE_TRANSCRIBE_MAX_ATTEMPTS", 3, minimum=1, maximum=20
)
CALLBRIDGE_TRANSCRIBE_LEASE_S = env_int(
    "CALLBRIDGE_TRANSCRIBE_LEASE_S", 60, minimum=5, maximum=3600
)
CALLBRIDGE_TRANSCRIBE_POLL_S = env_int("CALLBRIDGE_TRANSCRIBE_POLL_S", 10, minimum=1, maximum=3600)

# --- Metrics (issue 17): GET /metrics in Prometheus' text format --------------------------
# Scrapers prove themselves with this bearer token, or come from these addresses/networks
# (the client address of callbridge.client_address). Neither set: /metrics answers 404.
CALLBRIDGE_METRICS_TOKEN = env_str("CALLBRIDGE_METRICS_TOKEN")
if CALLBRIDGE_METRICS_TOKEN and len(CALLBRIDGE_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("CALLBRIDGE_METRICS_TOKEN must be at least 16 characters")
CALLBRIDGE_METRICS_ALLOWED = env_network_list("CALLBRIDGE_METRICS_ALLOWED")
# prometheus_client's multiprocess mode (docs/deploy.md#metrics): the one directory every
# process of the host writes its metrics to. prometheus_client reads the variable itself
# (when first imported, after these settings); this only refuses a missing directory.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR={PROMETHEUS_MULTIPROC_DIR!r} is not a directory: create it"
        " before the processes start"
    )
# The event-loop lag metric's sampling interval (0: off).
CALLBRIDGE_METRICS_LOOP_LAG_INTERVAL_MS = env_int(
    "CALLBRIDGE_METRICS_LOOP_LAG_INTERVAL_MS", 1000, minimum=0, maximum=60_000
)
# Uploads (audio files) are private like everything else callbridge writes
# (callbridge.private_files: every process runs with umask 077).
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
# Admin login throttling (django-axes): a username is locked from one client address after
# this many failed logins in a row, for the cool-off time; a success resets the count.
# By username AND address: one office behind a NAT cannot lock every operator out.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("CALLBRIDGE_LOGIN_FAILURE_LIMIT", 5, minimum=1, maximum=100)
AXES_COOLOFF_TIME = timedelta(
    minutes=env_int("CALLBRIDGE_LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=7 * 24 * 60)
)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "callbridge.client_address.client_ip"  # the one trust model
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
AXES_VERBOSE = False  # no start-up banner in every process (failures are still logged)

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            # Masks tokens and configured secrets in whatever reaches the console.
            "class": "callbridge.redaction.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        }
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "calls": {"level": LOG_LEVEL},
        "callbridge": {"level": LOG_LEVEL},
        "django": {"level": "WARNING"},
    },
}
