"""A local simulator of Runware's REST API for video inference."""
