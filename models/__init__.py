"""Model definition, training, registry, artifact store and model monitoring (imports only the ground package)."""
