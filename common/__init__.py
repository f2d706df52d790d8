"""What every stage shares: file handling (``files``) and the user-facing error convention (``errors``)."""
