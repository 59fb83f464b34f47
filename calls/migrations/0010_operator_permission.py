"""One explicit operator permission, `calls.operate_calls`, and an "Operators" group with it.

Staff who operated before this migration (every active staff user did) are put in the group,
so an upgrade locks nobody out; from now on being staff alone is not enough.
"""

from typing import Any

from django.conf import settings
from django.db import migrations

PERMISSION = ("operate_calls", "Can answer and place calls")
GROUP = "Operators"


def create_operators_group(apps: Any, schema_editor: Any) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    User = apps.get_model(settings.AUTH_USER_MODEL)
    call_type, _ = ContentType.objects.get_or_create(app_label="calls", model="call")
    codename, name = PERMISSION
    permission, _ = Permission.objects.get_or_create(
        content_type=call_type, codename=codename, defaults={"name": name}
    )
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(permission)
    for user in User.objects.filter(is_staff=True, is_active=True, is_superuser=False):
        user.groups.add(group)


class Migration(migrations.Migration):
    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("calls", "0009_recording_audio_started_at"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="call",
            options={
                "ordering": ["-created_at"],
                "permissions": [PERMISSION],
            },
        ),
        migrations.RunPython(create_operators_group, migrations.RunPython.noop),
    ]
