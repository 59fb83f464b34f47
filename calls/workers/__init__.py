"""Control of media workers from the serving side: the typed link to them, where calls go,
what they report, their heartbeat, and what a stopping or dead worker leaves behind."""
