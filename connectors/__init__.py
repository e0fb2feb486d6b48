"""Calendar provider connectors: one interface (`base.Connector`), one module per provider.

Connectors know nothing of syncd's store or daemon: they speak to a provider and return plain values.
"""
