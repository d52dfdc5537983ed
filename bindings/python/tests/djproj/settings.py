import os

from honker.contrib.django import use_pysqlite3

use_pysqlite3()  # a Python whose stdlib sqlite3 cannot load extensions (pyenv) uses pysqlite3

SECRET_KEY = "test"
USE_TZ = True
INSTALLED_APPS = ["django_tasks", "honker.contrib.django", "djproj"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["HONKER_DJANGO_DB"]}}
TASKS = {"default": {"BACKEND": "honker.contrib.django.HonkerBackend", "QUEUES": ["default", "mail"]}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
