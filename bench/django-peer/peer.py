"""The stack Vestibule replaces, for bench/peers.sh: Django + Django REST framework, session
auth with Django's cache session engine on a local-memory cache (no database), served by
gunicorn's sync worker.

POST /auth/login starts a session holding the user (CSRF-exempt: a benchmark fixture);
GET /auth/me is a DRF view answering the same JSON shape as Vestibule's /auth/me (the CSRF
token from Django's own middleware, the user from the session), 401 without a session.

    gunicorn --chdir bench/django-peer -w 1 -b 127.0.0.1:18463 peer:application
"""

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",
        "rest_framework",
    ],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
    ],
    SESSION_ENGINE="django.contrib.sessions.backends.cache",
    CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
    DATABASES={},
    USE_TZ=True,
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        "UNAUTHENTICATED_USER": None,
    },
)

import django  # noqa: E402

django.setup()

from django.http import JsonResponse  # noqa: E402
from django.middleware.csrf import get_token  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402


@csrf_exempt
def login(request):
    if request.method != "POST":
        return JsonResponse({"code": "method_not_allowed"}, status=405)
    request.session.cycle_key()
    request.session["user"] = {"id": 1, "username": "bench"}
    return JsonResponse({"csrf_token": get_token(request)})


class Me(APIView):
    def get(self, request):
        user = request.session.get("user")
        if user is None:
            return Response({"code": "not_authenticated"}, status=401)
        return Response({"csrf_token": get_token(request), "user": user})


urlpatterns = [path("auth/login", login), path("auth/me", Me.as_view())]
application = get_wsgi_application()
