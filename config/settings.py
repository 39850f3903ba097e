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
from kombu import Queue

from config.env import env_bool, env_int, env_list, env_networks, env_str

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
    "portal",
]

MIDDLEWARE = [
    # Outermost: sees every answer, including those Django makes from exceptions.
    "catalog.api.middleware.ApiErrorShapeMiddleware",
    "catalog.middleware.ContentSecurityPolicyMiddleware",
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
                # One client serves every thread of a process (catalog/storage.py), web
                # threads and transfer threads together: enough pooled connections for all.
                max_pool_connections=64,
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
# Versions smaller than this get no columnar copy: their rows come from a streaming read
# of the published file, which for a file this small costs about what reading a copy
# does, and publishing many small files often stays cheap. 0 copies every version.
COLUMNAR_COPY_MIN_BYTES = env_int("COLUMNAR_COPY_MIN_BYTES", 1024 * 1024, minimum=0)
# Uploads (S3 multipart uploads, local temporary files) unfinished for this many hours
# are aborted by a periodic sweep: their writer died, or its own abort could not get through.
MULTIPART_ABANDON_HOURS = env_int("MULTIPART_ABANDON_HOURS", 24, minimum=1)
# Files with more columns than this are refused at publish (the header is enough).
MAX_COLUMNS = env_int("MAX_COLUMNS", 2000, minimum=1)
# Uploads above this many bytes are refused (413).
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 50 * 1024**3, minimum=1)
# Uploads past this size are streamed to a temporary file, never held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Resumable uploads (versioning/services/resumable.py): `manage.py publish` sends files
# above this size in parts straight to storage; parts are this size (S3 needs at least
# 5 MiB for all but the last; a larger size is used when a file would need more than
# 10,000 parts). An upload unfinished this many hours after it began is aborted by the
# hourly sweep; it may not outlive MULTIPART_ABANDON_HOURS, whose bucket-wide sweep would
# abort its S3 parts anyway. Part URLs work for RESUMABLE_PART_URL_SECONDS.
RESUMABLE_UPLOAD_THRESHOLD_BYTES = env_int(
    "RESUMABLE_UPLOAD_THRESHOLD_BYTES", 64 * 1024**2, minimum=1
)
RESUMABLE_PART_BYTES = env_int("RESUMABLE_PART_BYTES", 64 * 1024**2, minimum=5 * 1024**2)
RESUMABLE_UPLOAD_EXPIRE_HOURS = env_int(
    "RESUMABLE_UPLOAD_EXPIRE_HOURS", MULTIPART_ABANDON_HOURS, minimum=1
)
if RESUMABLE_UPLOAD_EXPIRE_HOURS > MULTIPART_ABANDON_HOURS:
    raise ImproperlyConfigured(
        "RESUMABLE_UPLOAD_EXPIRE_HOURS must not be above MULTIPART_ABANDON_HOURS "
        f"({MULTIPART_ABANDON_HOURS}), whose sweep would abort the upload's parts first."
    )
RESUMABLE_PART_URL_SECONDS = env_int("RESUMABLE_PART_URL_SECONDS", 3600, minimum=60)

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
# One queue per kind of work, so a large publish never delays an event delivery or a
# notice. Tasks route by name: `versioning.*` publishing, `catalog.*` event delivery, and
# each later app by its own prefix. A worker started without -Q (the embedded mode,
# `make worker`) consumes every queue; in production run one worker pool per queue.
# CELERY_QUEUE_PREFIX keeps several installations (or test runs) on one Redis apart.
CELERY_QUEUE_PREFIX = env_str("CELERY_QUEUE_PREFIX")
CELERY_QUEUES = {
    name: f"{CELERY_QUEUE_PREFIX}{name}"
    for name in ("default", "publish", "events", "replication", "notifications", "usage")
}
CELERY_TASK_DEFAULT_QUEUE = CELERY_QUEUES["default"]
CELERY_TASK_QUEUES = [Queue(queue, routing_key=queue) for queue in CELERY_QUEUES.values()]
CELERY_TASK_ROUTES = {
    "versioning.run_publish_job": {"queue": CELERY_QUEUES["publish"]},
    "versioning.join_resumable_upload": {"queue": CELERY_QUEUES["publish"]},
    "versioning.sweep_publish_jobs": {"queue": CELERY_QUEUES["publish"]},
    "catalog.deliver_events": {"queue": CELERY_QUEUES["events"]},
    "catalog.sweep_events": {"queue": CELERY_QUEUES["events"]},
    "replication.*": {"queue": CELERY_QUEUES["replication"]},
    "notifications.*": {"queue": CELERY_QUEUES["notifications"]},
    "usage.*": {"queue": CELERY_QUEUES["usage"]},
}
CELERY_BEAT_SCHEDULE = {
    "sweep-publish-jobs": {"task": "versioning.sweep_publish_jobs", "schedule": 30.0},
    "sweep-events": {"task": "catalog.sweep_events", "schedule": 30.0},
    "prune-outbox": {"task": "catalog.prune_outbox", "schedule": 3600.0},
    "prune-manifests": {"task": "versioning.prune_manifests", "schedule": 3600.0},
    "abort-abandoned-uploads": {"task": "catalog.abort_abandoned_uploads", "schedule": 3600.0},
    "sweep-refused-staging": {"task": "versioning.sweep_refused_staging", "schedule": 3600.0},
    "sweep-resumable-uploads": {
        "task": "versioning.sweep_resumable_uploads",
        "schedule": 3600.0,
    },
    "notifications-tick": {
        "task": "notifications.tick",
        "schedule": float(env_int("NOTIFY_TICK_SECONDS", 5, minimum=1)),
    },
    "check-freshness": {"task": "versioning.check_freshness", "schedule": 300.0},
    "usage-ingest": {"task": "usage.ingest", "schedule": 10.0},
    "usage-rollup": {"task": "usage.rollup", "schedule": 60.0},
    "usage-maintain": {"task": "usage.maintain", "schedule": 3600.0},
}
# A running job whose worker has not reported for this long is taken as lost.
PUBLISH_JOB_LEASE_SECONDS = env_int("PUBLISH_JOB_LEASE_SECONDS", 120, minimum=5)
# A queued job not picked up for this long is dispatched again by the sweeper.
PUBLISH_JOB_REDISPATCH_SECONDS = env_int("PUBLISH_JOB_REDISPATCH_SECONDS", 60, minimum=1)
PUBLISH_JOB_MAX_ATTEMPTS = env_int("PUBLISH_JOB_MAX_ATTEMPTS", 3, minimum=1)
# The file of a publish refused for its version is kept this long, for a one-click
# republish as the version it needs; then the hourly sweeper removes it.
REFUSED_STAGING_HOURS = env_int("REFUSED_STAGING_HOURS", 24, minimum=1)
# A claimed event delivery whose handler has not finished for this long is retried.
OUTBOX_LEASE_SECONDS = env_int("OUTBOX_LEASE_SECONDS", 300, minimum=1)
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 10, minimum=1)
# Delivered events, and manifests superseded by a newer one, are deleted after this many
# days (audit entries and the manifests' immutable copies in storage stay).
OUTBOX_RETENTION_DAYS = env_int("OUTBOX_RETENTION_DAYS", 30, minimum=1)
MANIFEST_RETENTION_DAYS = env_int("MANIFEST_RETENTION_DAYS", 30, minimum=1)
# --- Replication (replication/) --------------------------------------------------------
# A copying worker that has not reported for this long has lost the replica to another.
REPLICATION_LEASE_SECONDS = env_int("REPLICATION_LEASE_SECONDS", 60, minimum=3)
# Failed attempts before a replica is reported failed (`replica.failed`); a failure of
# infrastructure is still retried after that, at the longest backoff.
REPLICATION_MAX_ATTEMPTS = env_int("REPLICATION_MAX_ATTEMPTS", 5, minimum=1)
REPLICATION_RETRY_MAX_SECONDS = env_int("REPLICATION_RETRY_MAX_SECONDS", 900, minimum=1)
# Copies into S3 go up as multipart uploads in parts of this size (AWS S3 needs at
# least 5 MiB), this many parts at a time.
REPLICATION_PART_BYTES = env_int("REPLICATION_PART_BYTES", 16 * 1024 * 1024, minimum=64 * 1024)
REPLICATION_UPLOAD_CONCURRENCY = env_int("REPLICATION_UPLOAD_CONCURRENCY", 8, minimum=1)
# Granularity of the bandwidth limit: each read through a throttled link takes this much.
REPLICATION_THROTTLE_CHUNK_BYTES = env_int(
    "REPLICATION_THROTTLE_CHUNK_BYTES", 256 * 1024, minimum=4096
)
# A copy still unverified this long after it was queued records `replica.late`.
REPLICATION_LATE_MINUTES = env_int("REPLICATION_LATE_MINUTES", 15, minimum=1)
# A verified replica is hashed again on its target at least this often (days).
REPLICATION_SCRUB_DAYS = env_int("REPLICATION_SCRUB_DAYS", 7, minimum=1)
REPLICATION_DEFAULT_BANDWIDTH_MBPS = env_int("REPLICATION_DEFAULT_BANDWIDTH_MBPS", 100, minimum=1)
REPLICATION_DEFAULT_RETENTION_DAYS = env_int("REPLICATION_DEFAULT_RETENTION_DAYS", 90, minimum=1)
CELERY_BEAT_SCHEDULE.update(
    {
        "replication-tick": {
            "task": "replication.tick",
            "schedule": float(env_int("REPLICATION_TICK_SECONDS", 10, minimum=1)),
        },
        "replication-scrub": {"task": "replication.scrub", "schedule": 3600.0},
        "replication-retention": {"task": "replication.retention", "schedule": 86400.0},
    }
)

# OpenLineage run events for each publish: an HTTP endpoint (e.g. Marquez) and/or a file
# of JSON lines; both empty means off.
OPENLINEAGE_URL = env_str("OPENLINEAGE_URL")
OPENLINEAGE_ENDPOINT = env_str("OPENLINEAGE_ENDPOINT", "api/v1/lineage")
OPENLINEAGE_FILE = env_str("OPENLINEAGE_FILE")
OPENLINEAGE_NAMESPACE = env_str("OPENLINEAGE_NAMESPACE", "dataset-publisher")
OPENLINEAGE_PRODUCER = env_str("OPENLINEAGE_PRODUCER", "urn:dataset-publisher:versioning")
OPENLINEAGE_TIMEOUT = env_int("OPENLINEAGE_TIMEOUT", 5, minimum=1)

# --- Notifications --------------------------------------------------------------------
# Email (notifications, invitations, password resets): SMTP when EMAIL_HOST is set
# (the services mode), else one file per message under VAR_DIR/mail (the embedded mode).
EMAIL_HOST = env_str("EMAIL_HOST")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", EMAIL_PORT == 587)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", EMAIL_PORT == 465)
    EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = VAR_DIR / "mail"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Dataset Publisher <noreply@localhost>")
# Hosts (names or addresses) that webhooks, Slack and the SMS provider may reach even
# though they are private or loopback: a development setup's own receivers.
NOTIFY_ALLOW_PRIVATE_HOSTS = env_list("NOTIFY_ALLOW_PRIVATE_HOSTS", [])
NOTIFY_HTTP_TIMEOUT = env_int("NOTIFY_HTTP_TIMEOUT", 5, minimum=1)
# A PEM file of the certificate authorities HTTPS receivers are checked against, instead
# of the system's (a private CA for in-house receivers); empty: the system's.
NOTIFY_CA_BUNDLE = env_str("NOTIFY_CA_BUNDLE", "")
# Hours a link confirming a new notification email address works.
NOTIFY_EMAIL_CONFIRM_HOURS = env_int("NOTIFY_EMAIL_CONFIRM_HOURS", 72, minimum=1)
NOTIFY_USER_AGENT = "DatasetPublisher-Notifications/1.0"
# A claimed delivery whose worker has not finished for this long is taken back.
NOTIFY_LEASE_SECONDS = env_int("NOTIFY_LEASE_SECONDS", 300, minimum=5)
# A pending delivery whose task has not run for this long is sent again by the tick.
NOTIFY_REDISPATCH_SECONDS = env_int("NOTIFY_REDISPATCH_SECONDS", 30, minimum=1)
NOTIFY_BATCH_SIZE = env_int("NOTIFY_BATCH_SIZE", 50, minimum=1)
NOTIFY_TICK_LIMIT = 5000
NOTIFY_WEBHOOK_ROTATION_HOURS = env_int("NOTIFY_WEBHOOK_ROTATION_HOURS", 24, minimum=0)
NOTIFY_WEBHOOK_DISABLE_DAYS = env_int("NOTIFY_WEBHOOK_DISABLE_DAYS", 5, minimum=1)
# SMS: a log line in the embedded mode; a Twilio-style provider when NOTIFY_SMS_URL is set.
NOTIFY_SMS_URL = env_str("NOTIFY_SMS_URL")
NOTIFY_SMS_BACKEND = env_str(
    "NOTIFY_SMS_BACKEND",
    "notifications.channels.HttpSmsBackend"
    if NOTIFY_SMS_URL
    else "notifications.channels.LogSmsBackend",
)
NOTIFY_SMS_ACCOUNT = env_str("NOTIFY_SMS_ACCOUNT")
NOTIFY_SMS_TOKEN = env_str("NOTIFY_SMS_TOKEN")
NOTIFY_SMS_FROM = env_str("NOTIFY_SMS_FROM")

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
# A country header (e.g. CF-IPCountry) believed only from TRUSTED_PROXIES.
USAGE_COUNTRY_HEADER = env_str("USAGE_COUNTRY_HEADER")
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
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:catalog"
LOGOUT_REDIRECT_URL = "portal:catalog"
# An invitation link works for this many days.
INVITATION_DAYS = env_int("INVITATION_DAYS", 7, minimum=1)
# A password-reset link works for this many seconds.
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3 * 24 * 3600, minimum=300)
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
# Lock-outs count per address as the rate limits and the audit log see it.
AXES_CLIENT_IP_CALLABLE = "catalog.addresses.client_ip"
# The sign-in pages (ours and the admin's) say so in a page; the API answers its own JSON.
AXES_LOCKOUT_TEMPLATE = "portal/locked.html"
AXES_VERBOSE = False
LANGUAGE_CODE = "en-us"
# ISO dates (YYYY-MM-DD) in every page, the admin included (config/formats/en/).
FORMAT_MODULE_PATH = ["config.formats"]
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
# Our own reverse proxies (addresses or CIDR networks): only a connection from one of
# them may name the client in X-Forwarded-For. Empty: the header is ignored.
TRUSTED_PROXIES = env_networks("TRUSTED_PROXIES")
# Sent with every response (admin, API docs, pages, API): scripts from our origin only.
CONTENT_SECURITY_POLICY = env_str(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "catalog.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["catalog.api.permissions.ScopePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["catalog.api.throttling.ApiRateThrottle"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "catalog.api.schema.AutoSchema",
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
    "ENUM_NAME_OVERRIDES": {"NotificationChannelEnum": "notifications.models.Channel"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "boto3": {"level": "WARNING"}},
}
