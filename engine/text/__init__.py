"""The text family's helpers: encoder fine-tuning (encoders), extractive QA (qa), sentence-transformers (sentence)."""
