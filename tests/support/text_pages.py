"""Small page images with a few lines of real text, for the adapters' OCR round trips."""

from __future__ import annotations

from pathlib import Path

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

PAGE_LINES = [
    ["The museum is closed", "on Mondays."],
    ["The night train to Lyon", "leaves at eleven."],  # states the answer
    ["Bananas are rich in", "potassium and fiber."],
]
QUERY = "when does the train to Lyon leave"
ANSWER_PAGE = 1


def render_text_page(lines: list[str]):
    """A white page with `lines` in an 18 px sans font (PIL only)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(FONT, 18) if Path(FONT).is_file() else ImageFont.load_default(18)
    image = Image.new("RGB", (380, 24 + 30 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((14, 12 + 30 * i), line, fill="black", font=font)
    return image
