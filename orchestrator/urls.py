from common.urls import handler400, handler403, handler404, handler500, service_urlpatterns

urlpatterns = service_urlpatterns("orchestrator.sagas.urls")

__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
