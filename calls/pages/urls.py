from django.urls import path

from calls.pages.views import enduser_page

urlpatterns = [
    path("talk/", enduser_page, name="enduser-page"),
]
# The dashboard lives under /admin/ (see callbridge/urls.py).
