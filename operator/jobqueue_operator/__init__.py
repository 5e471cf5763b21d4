"""jobqueue Kubernetes operator."""
