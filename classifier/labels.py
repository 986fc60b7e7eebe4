"""The 13 categories of TAXONOMY.md 1.3, in the order the default model uses."""

LABELS: tuple[str, ...] = (
    "programming", "roleplay", "translation", "writing", "general_qa", "education", "science",
    "technology", "health", "finance", "legal", "marketing", "other",
)
TAXONOMY_VERSION = "1.3"
