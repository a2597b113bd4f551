"""The draw-a-digit page: the Starlette app (``app.py``) and the page it serves (``index.html``,
``app.js``, ``style.css``)."""
