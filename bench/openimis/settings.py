"""Django settings for running the openIMIS claim modules (installed from PyPI) outside the
openIMIS assembly. Only what the claim, product, policy, insuree, location and medical modules
read at import and at submit/process time. Written for this benchmark; no openIMIS code is copied.

The database comes from OI_DB_* environment variables (run.sh sets them); migrations are
disabled so `migrate --run-syncdb` creates the tables straight from the models (peers.md 8.1),
without the AGPL SQL dump.
"""

import os

BASE_DIR = os.path.dirname(os.path.abspath(__file__))
SECRET_KEY = "openimis-bench-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = False
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

OPENIMIS_APPS = [
    "core",
    "location",
    "medical",
    "medical_pricelist",
    "product",
    "insuree",
    "policy",
    "contribution",
    "payer",
    "claim",
    "claim_batch",
    "contribution_plan",
    "invoice",
    "calculation",
    "calcrule_third_party_payment",
]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rules",
    "graphene_django",
    "rest_framework",
    "simple_history",
    "django_apscheduler",
] + OPENIMIS_APPS

# Tables straight from the models: no migration files are run.
MIGRATION_MODULES = {app.split(".")[-1]: None for app in INSTALLED_APPS}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("OI_DB_NAME", "openimis_bench"),
        "USER": os.environ.get("OI_DB_USER", "postgres"),
        "PASSWORD": os.environ.get("OI_DB_PASSWORD", ""),
        "HOST": os.environ.get("OI_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("OI_DB_PORT", "5432"),
        # Same setting on both sides of the comparison; run.sh passes the value it measures.
        "OPTIONS": {"options": "-c synchronous_commit=" + os.environ.get("OI_SYNCHRONOUS_COMMIT", "on")},
    }
}

AUTH_USER_MODEL = "core.User"
AUTHENTICATION_BACKENDS = ["rules.permissions.ObjectPermissionBackend", "django.contrib.auth.backends.ModelBackend"]

# In-process caches (openIMIS uses Redis in production; the claim path reads them only for
# reference data, which is tiny here).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default"},
    "location": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "location"},
    "coverage": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "coverage"},
}
CACHE_OBJECT_DEFAULT = 600
CACHE_OBJECT_TTL = 600

# Settings the core module reads at import time.
MSSQL = False
ROW_SECURITY = False
IS_TESTING = False
MODE = "PROD"
SITE_ROOT = lambda: "api/"  # noqa: E731 - core calls it
FRONTEND_URL = ""
EMAIL_HOST_USER = ""
RATELIMIT_CACHE = "default"
RATELIMIT_KEY = "ip"
RATELIMIT_RATE = "1000/m"
RATELIMIT_METHOD = "ALL"
RATELIMIT_GROUP = "bench"
RATELIMIT_ENABLE = False
PASSWORD_MIN_LENGTH = 8
PASSWORD_UPPERCASE = 0
PASSWORD_LOWERCASE = 0
PASSWORD_DIGITS = 0
PASSWORD_SYMBOLS = 0
PASSWORD_SPACES = 0
JWT_SECRET_KEY = SECRET_KEY
JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = None
JWT_ISSUER = None
JWT_LEEWAY = 0
JWT_VERIFY = True
JWT_VERIFY_EXPIRATION = True
AXES_FAILURE_LIMIT = 100
AXES_COOLOFF_TIME = 1
SCHEDULER_AUTOSTART = False
SCHEDULER_JOBS = []
SCHEDULER_CUSTOM = []
SCHEDULER_CONFIG = {}

GRAPHENE = {"SCHEMA": None}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
