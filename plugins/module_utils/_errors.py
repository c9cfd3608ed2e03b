# -*- coding: utf-8 -*-
# Copyright: Contributors to the cms.patching collection
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The error type a user can act on.

It lives in its own file so that the retry layer and the cancel watch can raise it without importing the
session factory (which imports them); ``_session.FleetError`` is this same class.
"""


class FleetError(Exception):
    """An error a user can act on; its message is shown as the module's msg."""
