"""What the tests share: the engines and base images (``engines``), the rootless user
(``rootless``) and the agents' users (``agentusers``), each made once per session."""
