from django.urls import path

from calls.pages.embed import embed_page, embed_session
from calls.pages.views import enduser_page

urlpatterns = [
    path("talk/", enduser_page, name="enduser-page"),
    path("talk/embed/", embed_page, name="enduser-embed"),
    path("talk/embed/session", embed_session, name="enduser-embed-session"),
]
# The dashboard lives under /admin/ (see callbridge/urls.py).
