#!/bin/sh
# Entry point of the one image: runs whatever process the command names (gunicorn, celery worker,
# beat or flower, `python manage.py relay`, bootstrap, …), e.g.
#   docker run cafe/backend gunicorn customer.wsgi --bind 0.0.0.0:8000
set -eu
# prometheus_client's multiprocess mode needs its directory before the first metric exists; on a
# fresh tmpfs or emptyDir it does not yet.
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi
exec "$@"
