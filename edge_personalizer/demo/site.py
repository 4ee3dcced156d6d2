"""The demo shop: a small multi-page site that the demo runs edge-personalizer in front of.

It is an ordinary site that knows nothing of personalization, except that its pages
carry `data-ep-slot` markers where variants may go.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

SITE = Path(__file__).parent / "site"


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price: float


CATALOGUE = (
    Product("rn-100", "Tempo Road Runner", "running", 129.0),
    Product("rn-200", "Marathon Glide", "running", 159.0),
    Product("rn-300", "Daily Trainer", "running", 99.0),
    Product("tr-100", "Ridge Trail Shoe", "trail", 139.0),
    Product("tr-200", "Scree Guard Mid", "trail", 169.0),
    Product("tr-300", "Summit Vest 12L", "trail", 89.0),
)


def _page(request: Request, title: str, content: str, status: int = 200) -> HTMLResponse:
    layout = (SITE / "layout.html").read_text()
    count = len([s for s in request.cookies.get("cart", "").split(".") if s])
    return HTMLResponse(layout.format(title=html.escape(title), content=content,
                                      cart_count=count), status_code=status)


def _products(category: str | None = None) -> str:
    items = [p for p in CATALOGUE if category in (None, p.category)]
    cards = "".join(
        f'<article class="product" data-sku="{p.sku}"><h3>{html.escape(p.name)}</h3>'
        f"<p>${p.price:.2f}</p><form method=\"post\" action=\"/cart\">"
        f'<input type="hidden" name="sku" value="{p.sku}"><button>Add to cart</button></form>'
        "</article>" for p in items)
    return f'<section class="products">{cards}</section>'


async def home(request: Request) -> Response:
    hero = ('<section class="hero" data-ep-slot="hero"><h1>Gear for every path</h1>'
            "<p>Road or trail, find your next pair.</p>"
            '<a href="/running">Shop running</a> · <a href="/trail">Shop trail</a></section>')
    return _page(request, "Home", hero + "<h2>Popular now</h2>" + _products())


async def category(request: Request) -> Response:
    name = request.path_params["category"]
    if name not in {p.category for p in CATALOGUE}:
        return await not_found(request, LookupError(name))
    hero = (f'<section class="hero" data-ep-slot="hero"><h1>{name.title()} shoes</h1>'
            f"<p>Everything for {name}.</p></section>")
    return _page(request, name.title(), hero + _products(name))


async def sale(request: Request) -> Response:
    promo = ('<section class="hero" data-ep-slot="promo"><h1>Sale</h1>'
             "<p>Up to 30% off last season's colours.</p></section>")
    return _page(request, "Sale", promo + _products())


async def about(request: Request) -> Response:
    return _page(request, "About", "<h1>About us</h1><p>Outfitting runners since 2009.</p>")


async def cart(request: Request) -> Response:
    items = [s for s in request.cookies.get("cart", "").split(".") if s]
    if request.method == "POST":
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        sku = form.get("sku", [""])[0]
        if any(p.sku == sku for p in CATALOGUE):
            items.append(sku)
        response = RedirectResponse("/cart", status_code=303)
        response.set_cookie("cart", ".".join(items[-20:]), httponly=True, samesite="lax")
        return response
    names = [p.name for sku in items for p in CATALOGUE if p.sku == sku]
    listing = "".join(f"<li>{html.escape(n)}</li>" for n in names) or "<li>Your cart is empty.</li>"
    buy = ('<form method="post" action="/checkout"><button>Buy now</button></form>'
           if names else "")
    return _page(request, "Cart", f"<h1>Your cart</h1><ul>{listing}</ul>{buy}")


async def checkout(request: Request) -> Response:
    """Buying the cart: on to the thank-you page, which names the order's total (the demo
    rules' purchase goal reads it)."""
    items = [s for s in request.cookies.get("cart", "").split(".") if s]
    total = sum(p.price for sku in items for p in CATALOGUE if p.sku == sku)
    response = RedirectResponse(f"/checkout/thanks?total={total:.2f}", status_code=303)
    response.delete_cookie("cart")
    return response


async def thanks(request: Request) -> Response:
    total = html.escape(request.query_params.get("total", "0"))
    return _page(request, "Thank you", f"<h1>Thank you!</h1><p>Order total: {total}</p>")


async def products_json(request: Request) -> Response:
    return JSONResponse([p.__dict__ for p in CATALOGUE])


async def not_found(request: Request, exc: Exception) -> Response:
    return _page(request, "Not found", "<h1>Not found</h1><p>That page is not here.</p>", 404)


def create_demo_site() -> Starlette:
    return Starlette(
        routes=[
            Route("/", home),
            Route("/sale", sale),
            Route("/about", about),
            Route("/cart", cart, methods=["GET", "POST"]),
            Route("/checkout", checkout, methods=["POST"]),
            Route("/checkout/thanks", thanks),
            Route("/api/products.json", products_json),
            Route("/{category:str}", category),
            Mount("/static", StaticFiles(directory=SITE / "static")),
        ],
        exception_handlers={404: not_found},
    )
