"""The dispatch interface: the contract between the engine and whatever runs attempts."""
