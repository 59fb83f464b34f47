"""The media side: aiortc peer connections, audio routing and the media worker.

Nothing here touches the ORM: the worker reports through a LegReporter and is reached
through the channel layer.
"""
