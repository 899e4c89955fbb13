"""The vision family's helpers: image encoders with a head (encoders), object detection (detection), vision-language models (vlm)."""
