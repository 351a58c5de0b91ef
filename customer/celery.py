from common.messaging.celery import make_celery_app

app = make_celery_app("customer")
