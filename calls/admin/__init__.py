from django.contrib import admin

from calls.admin import (  # noqa: F401  (registers)
    audio_admin,
    audit_admin,
    branding_admin,
    call_admin,
    callback_admin,
    credentials_admin,
    notes_admin,
    preflight_admin,
    queue_admin,
    transcript_admin,
    webhook_admin,
)

admin.site.site_header = "callbridge"
admin.site.site_title = "callbridge"
admin.site.index_title = "Calls, queues, credentials and records"
admin.site.index_template = "admin/callbridge_index.html"
