# -*- coding: utf-8 -*-
# Copyright (c) 2025, CMS Team
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Offline stand-in for the get-pip bootstrap script that ansible-test downloads.

Why it exists: ``ansible-test sanity`` builds one virtual environment per sanity
test, created without pip, and bootstraps pip into it by running a ``get-pip``
script that it downloads from a host our machines and CI cannot reach.  Before
downloading, ansible-test looks for the script in its cache
(``~/.ansible/test/cache/get_pip_24_2.py`` for ansible-core 2.19, the name being
derived from the pinned pip version).  ``tools/ansible-test-sanity.sh`` copies
this file there.

ansible-test runs the cached script as ``__main__`` inside the new virtual
environment with ``sys.argv[1:]`` set to pip install arguments, for example
``--disable-pip-version-check pip==24.2 --no-setuptools --no-wheel``.  This
stand-in installs the pip wheel bundled with the interpreter (``ensurepip``),
drops the options that only get-pip understands (``--no-setuptools`` and
``--no-wheel``) and runs ``pip install`` with the remaining arguments, which
upgrades pip to the pinned version from the package index.
"""

from __future__ import annotations

import subprocess
import sys

# Options understood by get-pip but not by "pip install".
GET_PIP_ONLY_OPTIONS = frozenset(("--no-setuptools", "--no-wheel"))


def main():
    """Bootstrap pip with ensurepip, then pip install the requested packages."""
    pip_args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]

    subprocess.run([sys.executable, "-m", "ensurepip", "--upgrade"], check=True, stdout=subprocess.DEVNULL)

    if pip_args:
        result = subprocess.run([sys.executable, "-m", "pip", "install"] + pip_args, check=False)
        sys.exit(result.returncode)


if __name__ == "__main__":
    main()
