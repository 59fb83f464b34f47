from django.contrib import admin

from calls.admin import audio_admin, call_admin, credentials_admin  # noqa: F401  (registers)

admin.site.site_header = "callbridge"
admin.site.site_title = "callbridge"
admin.site.index_title = "Calls, credentials and records"
admin.site.index_template = "admin/callbridge_index.html"
