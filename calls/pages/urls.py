from django.urls import path

from calls.pages.embed import embed_page, embed_session
from calls.pages.language import js_catalog
from calls.pages.views import brand_logo, enduser_page

urlpatterns = [
    path("talk/", enduser_page, name="enduser-page"),
    path("talk/embed/", embed_page, name="enduser-embed"),
    path("talk/embed/session", embed_session, name="enduser-embed-session"),
    path("i18n/<str:lang>.js", js_catalog, name="js-catalog"),
    path("talk/brand/logo", brand_logo, name="enduser-logo"),
]
# The dashboard lives under /admin/ (see callbridge/urls.py).
