"""Seal the audit rows written before the chains existed, each table in id order."""

from typing import Any

from django.db import migrations

from calls.models.audit_chain import seal_rows

# Format version 1's hashed fields as they were when the chains began (frozen here: the
# models' CHAIN_FIELDS may only ever grow with a new format version).
CHAINS = {
    "callevent": ("call_id", "leg_id", "name", "actor", "actor_role", "data", "created_at"),
    "recordingconsent": (
        "call_id",
        "role",
        "party",
        "granted",
        "policy_version",
        "text_sha256",
        "method",
        "created_at",
        "ip",
        "user_agent",
    ),
    "recordingaccess": ("recording_id", "username", "action", "at", "ip"),
}


def seal_existing(apps: Any, schema_editor: Any) -> None:
    head = apps.get_model("calls", "AuditChainHead")
    for name, fields in CHAINS.items():
        seal_rows(apps.get_model("calls", name), head, fields)


class Migration(migrations.Migration):
    dependencies = [("calls", "0029_audit_hash_chains")]

    operations = [migrations.RunPython(seal_existing, migrations.RunPython.noop)]
