"""digest: a newsletter digest generator.

The package reads like its pipeline: settings -> sources -> articles ->
selection -> audience -> rendering -> delivery (providers, ledger) -> cli.
"""

__version__ = "0.1.0"
