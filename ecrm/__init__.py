"""ecrm: an omnichannel eCRM messaging engine.

The flow is the package order: profiles -> segments -> campaigns -> render -> channels ->
deliveries -> feedback. Import from the stage packages; this module only holds the version.
"""

__version__ = "0.1.0"
