"""Who owns what on the host: the uid an agent runs as (``identity``) and the private
directories corral keeps for one user, opened without following links (``privdir``)."""
