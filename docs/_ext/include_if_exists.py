"""``.. include-if-exists:: FILE``: include a fragment that may not have been written yet.

Some pages include tables that a script writes (``benchmarks/mining.py`` writes
``benchmarks_mining.rst``, for example). When the file is there, the directive behaves like
``.. include::``; when it is not, the directive's own content is rendered instead. Either way the
page depends on the file, so the page is rebuilt once the file appears or changes.
"""

from pathlib import Path

from sphinx.directives.other import Include


class IncludeIfExists(Include):
    """``.. include::`` with a fallback body for a file that does not exist."""

    has_content = True

    def run(self):
        _, path = self.env.relfn2path(self.arguments[0], self.env.docname)
        if Path(path).is_file():
            return super().run()
        self.env.note_dependency(path)
        return self.parse_content_to_nodes(allow_section_headings=True)


def setup(app):
    app.add_directive("include-if-exists", IncludeIfExists)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
