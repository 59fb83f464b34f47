"""Static files: WhiteNoise's compressed, hashed storage, with ES module imports rewritten.

The front end is plain ES modules importing each other (`./media.js`); Django rewrites
those imports to the hashed names, so a deploy never mixes old and new modules.
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    support_js_module_import_aggregation = True
