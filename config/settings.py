"""Dataset Publisher settings: one module, driven by environment variables.

With nothing set, the app runs in the embedded mode: SQLite, objects and the task queue
under ./var/, signed download URLs served by the app itself. Setting DATABASE_URL,
REDIS_URL and S3_BUCKET (each on its own) moves that part to a real service; with all
three it runs in the services mode that scales past one machine.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

# With nothing set (the embedded mode on one's own machine) DEBUG is on; once a real
# database is named, it is off unless asked for, and SECRET_KEY must then be set.
DEBUG = env_bool("DEBUG", not env_str("DATABASE_URL"))


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # Embedded development mode: keep one random key across restarts so sessions and
    # signed download URLs survive a restart of `make run`.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "catalog",
    "versioning",
    "replication",
    "notifications",
    "usage",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so it sees the outcome of every sign-in (admin login, API Basic auth).
    "axes.middleware.AxesMiddleware",
    # Records API requests and served objects after their answer has gone (usage app).
    "usage.middleware.UsageMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL,
            conn_max_age=env_int("DB_CONN_MAX_AGE", 600, minimum=0),
            conn_health_checks=True,
        )
    }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "OPTIONS": {
                # The web process and the worker share this file: WAL lets readers go on
                # while the worker commits, IMMEDIATE makes writers queue, not fail.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (throttling, locks) -------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            # Django's RedisCache, reusing one client per pool (see the module).
            "BACKEND": "catalog.api.cache_backend.ReusingRedisCache",
            "LOCATION": env_str("CACHE_REDIS_URL", REDIS_URL),
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 2},
        }
    }
else:
    # A file cache is shared by the web process and the worker, unlike local memory.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": VAR_DIR / "cache",
        }
    }

# --- Object storage -------------------------------------------------------------------
S3_BUCKET = env_str("S3_BUCKET")
if S3_BUCKET:
    from botocore.config import Config as _BotoConfig

    _datasets_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
            "region_name": env_str("S3_REGION", "us-east-1"),
            "access_key": env_str("S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("S3_SECRET_ACCESS_KEY") or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": True,
            # Integrity is ours to check (every version's SHA-256). boto3's newer default
            # CRC checksums are not kept consistently by every S3-compatible server across
            # copies of multipart objects, so they are used only where S3 requires them.
            "client_config": _BotoConfig(
                s3={"addressing_style": env_str("S3_ADDRESSING_STYLE", "path")},
                signature_version="s3v4",
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"mode": "standard", "max_attempts": 5},
            ),
        },
    }
else:
    _datasets_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": VAR_DIR / "objects", "file_permissions_mode": 0o640},
    }
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
    "datasets": _datasets_storage,
}
# Streaming copies and hashing read and write in chunks of this size.
STREAM_CHUNK_BYTES = env_int("STREAM_CHUNK_BYTES", 8 * 1024 * 1024, minimum=64 * 1024)
# Each web host keeps local copies of the columnar (Parquet) objects that rows are read
# from, up to this many bytes under VAR_DIR/columnar-cache; 0 reads them from storage.
COLUMNAR_CACHE_BYTES = env_int("COLUMNAR_CACHE_BYTES", 8 * 1024**3, minimum=0)
# Uploads above this many bytes are refused (413).
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 50 * 1024**3, minimum=1)
# Uploads past this size are streamed to a temporary file, never held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# --- Background work (Celery) ---------------------------------------------------------
if REDIS_URL:
    CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": 1,
        "socket_timeout": 5,
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=10),
    }
else:
    _queue_dir = VAR_DIR / "queue"
    for _sub in ("messages", "processed", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "messages"),
        "data_folder_out": str(_queue_dir / "messages"),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),
        # A folder has no push: look often, so a publish starts within a blink.
        "polling_interval": 0.2,
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "sweep-publish-jobs": {"task": "versioning.sweep_publish_jobs", "schedule": 30.0},
    "sweep-events": {"task": "catalog.sweep_events", "schedule": 30.0},
    "usage-ingest": {"task": "usage.ingest", "schedule": 10.0},
    "usage-rollup": {"task": "usage.rollup", "schedule": 60.0},
    "usage-maintain": {"task": "usage.maintain", "schedule": 3600.0},
}
# A running job whose worker has not reported for this long is taken as lost.
PUBLISH_JOB_LEASE_SECONDS = env_int("PUBLISH_JOB_LEASE_SECONDS", 120, minimum=5)
# A queued job not picked up for this long is dispatched again by the sweeper.
PUBLISH_JOB_REDISPATCH_SECONDS = env_int("PUBLISH_JOB_REDISPATCH_SECONDS", 60, minimum=1)
PUBLISH_JOB_MAX_ATTEMPTS = env_int("PUBLISH_JOB_MAX_ATTEMPTS", 3, minimum=1)
# A claimed event delivery whose handler has not finished for this long is retried.
OUTBOX_LEASE_SECONDS = env_int("OUTBOX_LEASE_SECONDS", 300, minimum=1)
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 10, minimum=1)
# OpenLineage run events for each publish: an HTTP endpoint (e.g. Marquez) and/or a file
# of JSON lines; both empty means off.
OPENLINEAGE_URL = env_str("OPENLINEAGE_URL")
OPENLINEAGE_ENDPOINT = env_str("OPENLINEAGE_ENDPOINT", "api/v1/lineage")
OPENLINEAGE_FILE = env_str("OPENLINEAGE_FILE")
OPENLINEAGE_NAMESPACE = env_str("OPENLINEAGE_NAMESPACE", "dataset-publisher")
OPENLINEAGE_PRODUCER = env_str("OPENLINEAGE_PRODUCER", "urn:dataset-publisher:versioning")
OPENLINEAGE_TIMEOUT = env_int("OPENLINEAGE_TIMEOUT", 5, minimum=1)

# --- Usage analytics (usage app) -----------------------------------------------------
# Off: nothing is recorded (the middleware passes requests straight through).
USAGE_RECORDING = env_bool("USAGE_RECORDING", True)
# Where requests append their events before the ingest task copies them into the
# database: Redis in the services mode; local spool files when it is unset or down.
USAGE_REDIS_URL = env_str("USAGE_REDIS_URL", REDIS_URL)
USAGE_BUFFER_KEY = env_str("USAGE_BUFFER_KEY", "usage:events")
USAGE_SPOOL_DIR = Path(env_str("USAGE_SPOOL_DIR", str(VAR_DIR / "usage-spool")))
USAGE_INGEST_BATCH = env_int("USAGE_INGEST_BATCH", 20000, minimum=1)
# An ingest run holds a lease in Redis; a worker killed mid-batch loses it after this.
USAGE_INGEST_LEASE_SECONDS = env_int("USAGE_INGEST_LEASE_SECONDS", 120, minimum=1)
# Raw events are kept this many months (whole monthly partitions, once rolled up).
USAGE_RETENTION_MONTHS = env_int("USAGE_RETENTION_MONTHS", 13, minimum=1)
USAGE_PARTITIONS_AHEAD = env_int("USAGE_PARTITIONS_AHEAD", 3, minimum=1)
# A country header (e.g. CF-IPCountry) believed only from these proxy addresses.
USAGE_COUNTRY_HEADER = env_str("USAGE_COUNTRY_HEADER")
USAGE_TRUSTED_PROXIES = env_list("USAGE_TRUSTED_PROXIES", [])
# Segments from the trailing 30 days' active days (Power, Regular, else Occasional
# when active in 90 days); New for users first seen within USAGE_SEGMENT_NEW_DAYS.
USAGE_SEGMENT_POWER_DAYS = env_int("USAGE_SEGMENT_POWER_DAYS", 12, minimum=1)
USAGE_SEGMENT_REGULAR_DAYS = env_int("USAGE_SEGMENT_REGULAR_DAYS", 4, minimum=1)
USAGE_SEGMENT_NEW_DAYS = env_int("USAGE_SEGMENT_NEW_DAYS", 14, minimum=1)
# A day's downloads outside K standard deviations of the trailing 28 days is an anomaly
# (given at least MIN_DAYS days of history).
USAGE_ANOMALY_K = env_int("USAGE_ANOMALY_K", 3, minimum=1)
USAGE_ANOMALY_MIN_DAYS = env_int("USAGE_ANOMALY_MIN_DAYS", 14, minimum=2)

# --- Signed download URLs (embedded mode) ---------------------------------------------
SIGNED_URL_DEFAULT_TTL = 3600
SIGNED_URL_MIN_TTL = 60
SIGNED_URL_MAX_TTL = 7 * 24 * 3600
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000")

# --- Auth, i18n, static ---------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"
# The lock-out check runs before the password check (django-axes).
AUTHENTICATION_BACKENDS = [
    "catalog.auth_backends.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Repeated failed passwords (admin login, the API's Basic auth) lock that account from
# that address for a while.
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_int("LOGIN_LOCKOUT_MINUTES", 15, minimum=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- Security (strict unless DEBUG) ---------------------------------------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "catalog.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["catalog.api.permissions.ScopePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["catalog.api.throttling.ApiRateThrottle"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "catalog.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "catalog.api.errors.exception_handler",
    # `format` is the rows endpoint's own parameter (json, csv, ndjson).
    "URL_FORMAT_OVERRIDE": None,
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}


def _rate(name: str, default: str) -> str:
    # Not catalog.api.throttling: importing DRF here would freeze its settings empty.
    from catalog.api.rates import parse_rate

    value = env_str(name, default)
    try:
        parse_rate(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must look like 10/min (per s, min, hour or day), not {value!r}."
        ) from None
    return value


# Requests per caller (user, or address when anonymous), counted in the shared cache.
API_RATES = {
    "api": _rate("API_RATE", "1200/min"),
    # Seed 001: signed-URL requests default to 10 a minute per user.
    "signed_url": _rate("API_SIGNED_URL_RATE", "10/min"),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Dataset Publisher API",
    "DESCRIPTION": (
        "List and search datasets, read the manifest, get signed download URLs, read "
        "rows and columns, and publish new versions. Authenticate with "
        "`Authorization: Bearer <token>` (tokens from POST /api/v1/tokens/). Every "
        'error is `{"error": {"code", "message", "details"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files (drf-spectacular-sidecar), no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "boto3": {"level": "WARNING"}},
}
