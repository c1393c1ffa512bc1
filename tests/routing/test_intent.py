# ruff: noqa: RUF001  (multilingual prompts on purpose)
"""``model="auto"`` intent: a labelled set of realistic prompts (all six intents, several languages) must
agree with ``classify`` at least 90 % of the time; plus precedence, hints, the long threshold and the
rule that the current user turn outweighs earlier context."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import msgspec
import pytest

from omen.api.chat import ChatCompletionRequest
from omen.config.schema import AutoConfig
from omen.errors import OmenError
from omen.routing import intent as intent_mod
from omen.routing.intent import INTENTS, Intent, classify, priority_hint, weighted_texts
from omen.tokens import count_chat

THRESHOLD = AutoConfig().long_threshold_tokens  # the configured default, 6000

PNG_1PX = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def request(payload: str | dict[str, Any]) -> ChatCompletionRequest:
    """A str is one user message; a dict gives the request's fields (model defaults to auto)."""
    body = {"messages": [{"role": "user", "content": payload}]} if isinstance(payload, str) else dict(payload)
    body.setdefault("model", "auto")
    return msgspec.convert(body, ChatCompletionRequest)


def with_image(text: str, url: str = "https://example.com/photo.jpg", **image: Any) -> dict[str, Any]:
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url, **image}}]
    return {"messages": [{"role": "user", "content": parts}]}


def tool(name: str, description: str, **properties: str) -> dict[str, Any]:
    props = {k: {"type": "string", "description": v} for k, v in properties.items()}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": props, "required": list(props)}}}  # fmt: skip


def with_tools(text: str, *tools: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "tools": list(tools)}


def document(sentences: list[str], chars: int) -> str:
    """A long text of numbered paragraphs cycling through ``sentences`` (a pasted report, transcript...)."""
    out: list[str] = []
    size = 0
    for i in itertools.count(1):
        line = f"{i}. {sentences[(i * 7) % len(sentences)]} {sentences[i % len(sentences)]}"
        out.append(line)
        size += len(line) + 1
        if size >= chars:
            return "\n".join(out)
    raise AssertionError("unreachable")


EN_MEETING = [
    "Priya: the vendor contract renews in March and legal wants the termination clause reworded.",
    "Tom: marketing spent about forty percent of the quarterly budget on the trade show in Berlin.",
    "Alice: customer churn in the small-business segment went up after the price change in October.",
    "Priya: we agreed to move the launch of the mobile onboarding flow to the second week of April.",
    "Marco: the warehouse in Rotterdam is at capacity and we need a decision on the second site soon.",
    "Alice: hiring for the support team is behind plan, two offers were declined last month.",
    "Tom: the board asked for a clearer story on international growth before the next meeting.",
    "Marco: shipping costs to Scandinavia fell after we switched carriers in the summer.",
    "Priya: the internal survey shows people want fewer recurring meetings and more written updates.",
    "Alice: the partnership with the regional bank is still waiting for their compliance review.",
    "Tom: we should revisit the pricing page, the enterprise tier is confusing to most visitors.",
]
RU_REPORT = [
    "В третьем квартале выручка компании выросла на двенадцать процентов по сравнению с прошлым годом.",
    "Основной рост обеспечили региональные филиалы в Казани, Екатеринбурге и Новосибирске.",
    "Расходы на логистику увеличились из-за подорожания топлива и смены перевозчика в августе.",
    "Отдел продаж перевыполнил план по новым клиентам, но средний чек немного снизился.",
    "Служба поддержки сократила среднее время ответа до четырёх часов благодаря новому графику смен.",
    "Совет директоров одобрил открытие склада под Санкт-Петербургом в следующем году.",
    "Опрос сотрудников показал высокий интерес к программам обучения и гибкому графику.",
    "Маркетинговая кампания в социальных сетях принесла меньше заявок, чем ожидалось.",
    "Юридический отдел завершил проверку договоров с ключевыми поставщиками без замечаний.",
    "В следующем квартале планируется обновить сайт и упростить оформление заказа для клиентов.",
]
ZH_ARTICLE = [
    "近年来，越来越多的年轻人选择在周末去郊区徒步，既能锻炼身体，又能放松心情。",
    "城市公园的改造让附近居民有了更多散步和聊天的空间，社区氛围也变得更加热闹。",
    "不少家庭开始重视阅读习惯，每天晚上留出半小时和孩子一起看书。",
    "传统节日期间，各地的庙会和灯会吸引了大量游客，带动了当地的餐饮和住宿。",
    "专家建议，长时间使用手机的人应该每隔一段时间起身活动，注意保护眼睛。",
    "随着高铁网络的完善，短途旅行变得更加方便，许多人选择说走就走的旅行。",
    "农村地区的电商发展迅速，农民可以直接把水果和特产卖到全国各地。",
    "图书馆推出了夜间开放服务，受到上班族和学生的欢迎。",
    "越来越多的人开始关注健康饮食，少油少盐成为新的生活方式。",
    "志愿者们定期到养老院陪伴老人，为他们唱歌、读报、聊天。",
]
ES_POLICY = [
    "Los clientes pueden devolver cualquier artículo sin usar en su embalaje original dentro del plazo indicado.",
    "Los reembolsos se emiten al método de pago original una vez recibido e inspeccionado el artículo.",
    "Los productos personalizados y las tarjetas regalo no admiten devolución salvo defecto de fábrica.",
    "Los gastos de envío de la devolución corren a cargo del cliente, excepto si el producto llegó dañado.",
    "Para iniciar una devolución, el cliente debe contactar con atención al cliente e indicar su número de pedido.",
    "Las ofertas de temporada pueden tener condiciones especiales que se comunican en la página del producto.",
    "La garantía legal cubre los defectos de conformidad que se manifiesten después de la entrega.",
    "Los artículos de higiene personal solo se aceptan si el precinto no ha sido abierto.",
]
DE_CHAT = [
    "Wir planen im Sommer eine Radtour entlang der Donau von Passau bis Wien.",
    "Die Etappen sollen nicht länger als sechzig Kilometer sein, weil die Kinder mitfahren.",
    "Unterwegs möchten wir in kleinen Pensionen übernachten und regionale Küche probieren.",
    "Am liebsten würden wir einen Ruhetag in Melk einlegen, um das Stift zu besichtigen.",
    "Das Gepäck soll möglichst von Unterkunft zu Unterkunft transportiert werden.",
    "Bei schlechtem Wetter wäre es gut, auf Bahn oder Schiff ausweichen zu können.",
]
PY_MODULE = [
    "def load_orders(path):\n    with open(path) as f:\n        return [parse(line) for line in f if line]\n",
    "class OrderBook:\n    def __init__(self):\n        self.bids = []\n        self.asks = []\n",
    "def parse(line):\n    fields = line.rstrip('\\n').split(',')\n    return Order(*fields)\n",
    "def best_bid(book):\n    return max(book.bids, key=lambda o: o.price, default=None)\n",
    "async def stream_quotes(client, symbols):\n    async for quote in client.watch(symbols):\n        yield quote\n",
]

# (expected intent, language, payload): a str is a single user message.
# fmt: off
LABELLED: list[tuple[str, str, str | dict[str, Any]]] = [
    # ---- code ----
    ("code", "en", "My Flask app returns a 500 when I post JSON to /login. Here's the traceback:\n"
     "Traceback (most recent call last):\n  File \"app.py\", line 42, in login\n"
     "    user = db.query(User).filter_by(email=data['email']).first()\nKeyError: 'email'\nWhat am I doing wrong?"),
    ("code", "en", "Can you write a function in TypeScript that debounces another function and keeps the correct "
     "`this` binding?"),
    ("code", "en", "Why does this loop never terminate?\n```c\nfor (unsigned int i = 10; i >= 0; i--) {\n"
     "    printf(\"%u\\n\", i);\n}\n```"),
    ("code", "en", "What's the difference between git rebase and merge, and which one should I use on a shared "
     "branch?"),
    ("code", "en", "Refactor this class so it doesn't hit the database on every property access:\n\n"
     "class Report:\n    def __init__(self, id):\n        self.id = id\n\n    @property\n    def rows(self):\n"
     "        return db.fetch_all(self.id)"),
    ("code", "en", "I need a SQL query that returns each customer's three most recent orders, newest first. "
     "We're on Postgres 15."),
    ("code", "ru", "Напиши функцию на Python, которая читает CSV-файл и возвращает словарь, где ключ — id "
     "пользователя."),
    ("code", "ru", "У меня падает сборка на Go с ошибкой «undefined: http.NewRequestWithContext». Что не так с "
     "версией?"),
    ("code", "ru", "Как в JavaScript правильно отменить fetch-запрос, если пользователь ушёл со страницы?"),
    ("code", "zh", "帮我写一个Python脚本，把目录下所有的.jpg图片批量重命名为拍摄日期。"),
    ("code", "zh", "这段 Java 代码为什么会抛出 NullPointerException？\n```java\nString s = map.get(\"key\");\n"
     "if (s.equals(\"x\")) { run(); }\n```"),
    ("code", "zh", "用 Rust 实现一个线程安全的 LRU 缓存，需要支持 get 和 put，时间复杂度 O(1)。"),
    ("code", "es", "¿Cómo puedo leer un archivo JSON en Node.js y quedarme solo con los objetos cuyo campo "
     "'activo' sea true?"),
    ("code", "es", "Tengo un error de compilación en C++: 'no matching function for call to "
     "std::vector<int>::push_back'. ¿Qué significa?"),
    ("code", "es", "Escribe una función en Python que valide direcciones de correo electrónico con una expresión "
     "regular."),
    ("code", "de", "Ich bekomme in meinem React-Projekt die Fehlermeldung 'Cannot read properties of undefined "
     "(reading map)'. Wie behebe ich das?"),
    ("code", "de", "Schreibe eine Funktion in Java, die prüft, ob ein String ein Palindrom ist."),
    ("code", "de", "Wie kann ich in Pandas zwei DataFrames anhand einer gemeinsamen Spalte zusammenführen?"),
    ("code", "fr", "Peux-tu m'expliquer pourquoi ma fonction récursive en Python dépasse la profondeur maximale "
     "de récursion ?"),
    ("code", "fr", "Comment configurer GitHub Actions pour lancer les tests pytest à chaque pull request ?"),
    ("code", "pt", "Escreva uma função em JavaScript que remova itens duplicados de um array."),
    ("code", "en", {"messages": [
        {"role": "user", "content": "How do I read a file line by line in Go?"},
        {"role": "assistant", "content": "Use bufio.Scanner:\n```go\nf, _ := os.Open(path)\n"
         "s := bufio.NewScanner(f)\nfor s.Scan() {\n    fmt.Println(s.Text())\n}\n```"},
        {"role": "user", "content": "And how do I skip empty ones and handle the error properly?"},
    ]}),
    # ---- reasoning ----
    ("reasoning", "en", "A train leaves Chicago at 3 pm going 60 mph; another leaves Detroit, 280 miles away, at "
     "4 pm going 80 mph toward it. When and where do they meet?"),
    ("reasoning", "en", "Prove that the square root of 2 is irrational."),
    ("reasoning", "en", "If all bloops are razzies and all razzies are lazzies, are all bloops definitely "
     "lazzies? Explain your reasoning."),
    ("reasoning", "en", "What is the probability of getting at least one six when rolling four dice?"),
    ("reasoning", "en", "Find the derivative of f(x) = x^3 · ln(x) and simplify it."),
    ("reasoning", "en", "Here's a classic puzzle: three boxes are labelled apples, oranges and mixed, and every "
     "label is wrong. You may take one fruit from one box. How do you fix all the labels?"),
    ("reasoning", "en", "A bat and a ball cost $1.10 in total. The bat costs $1.00 more than the ball. How much "
     "does the ball cost?"),
    ("reasoning", "ru", "Докажите, что сумма углов треугольника равна 180 градусам."),
    ("reasoning", "ru", "В классе 30 учеников, 40% из них девочки. Сколько в классе мальчиков?"),
    ("reasoning", "ru", "Реши уравнение x² − 5x + 6 = 0 и объясни каждый шаг."),
    ("reasoning", "zh", "一个水池有两个进水管，甲管单独注满需要6小时，乙管需要4小时，两管同时打开要多少小时注满？"),
    ("reasoning", "zh", "证明：对于任意正整数n，n³ − n 能被6整除。"),
    ("reasoning", "zh", "袋子里有3个红球和5个蓝球，随机取出两个，都是红球的概率是多少？"),
    ("reasoning", "es", "Resuelve paso a paso: si 3x + 7 = 22, ¿cuánto vale x?"),
    ("reasoning", "es", "Demuestra que la suma de dos números impares siempre es par."),
    ("reasoning", "es", "Un coche recorre 150 km en 2 horas y media. ¿Cuál es su velocidad media en km/h?"),
    ("reasoning", "de", "Wie viele verschiedene Möglichkeiten gibt es, 5 Bücher in einem Regal anzuordnen?"),
    ("reasoning", "de", "Berechne die Fläche eines Kreises mit dem Radius 7 cm."),
    ("reasoning", "de", "Beweise, dass es unendlich viele Primzahlen gibt."),
    ("reasoning", "fr", "Résous l'équation 2x + 3 = 11 en détaillant chaque étape."),
    ("reasoning", "fr", "Combien de poignées de main y a-t-il si 10 personnes se saluent toutes une fois ?"),
    ("reasoning", "pt", "Quanto é 15% de 240? Mostre o cálculo."),
    # ---- chat ----
    ("chat", "en", "Can you suggest a few names for a golden retriever puppy? She's super playful."),
    ("chat", "en", "Write a short poem about the first snow of winter."),
    ("chat", "en", "What are some good things to do in Lisbon on a rainy weekend?"),
    ("chat", "en", "My coworker keeps taking credit for my work. How should I bring it up with my manager?"),
    ("chat", "en", "Help me write a toast for my sister's wedding: warm, a little funny, under two minutes."),
    ("chat", "en", "Who was Ada Lovelace and why is she famous?"),
    ("chat", "en", {"messages": [
        {"role": "system", "content": "You are a friendly assistant for a travel agency."},
        {"role": "user", "content": "I'm going to Japan in April. What should I pack?"},
    ]}),
    ("chat", "ru", "Привет! Посоветуй, какой фильм посмотреть вечером всей семьёй."),
    ("chat", "ru", "Напиши тёплое поздравление с днём рождения для бабушки."),
    ("chat", "ru", "Как лучше подготовиться к собеседованию на должность менеджера по продажам?"),
    ("chat", "zh", "你好！周末去杭州旅游，有什么推荐的景点和美食吗？"),
    ("chat", "zh", "帮我写一首关于秋天的短诗。"),
    ("chat", "zh", "最近工作压力很大，晚上总是睡不着，你有什么建议吗？"),
    ("chat", "es", "Hola, ¿me recomiendas algún libro de ciencia ficción para el verano?"),
    ("chat", "es", "Escribe un correo amable para pedirle a mi vecino que baje el volumen de la música por la "
     "noche."),
    ("chat", "es", "¿Cuál es la diferencia entre un café americano y un espresso?"),
    ("chat", "de", "Kannst du mir ein einfaches Rezept für Apfelkuchen geben?"),
    ("chat", "de", "Was sind gute Geschenkideen für einen Kollegen, der in Rente geht?"),
    ("chat", "de", "Erzähl mir etwas über die Geschichte von Berlin."),
    ("chat", "fr", "Bonjour ! Peux-tu me conseiller un bon restaurant italien à Lyon ?"),
    ("chat", "fr", "Traduis cette phrase en anglais : « Je suis ravi de vous rencontrer. »"),
    ("chat", "ja", "こんにちは！週末におすすめの映画を教えてください。"),
    # ---- vision ----
    ("vision", "en", with_image("What's written on this whiteboard? Please transcribe it.")),
    ("vision", "ru", with_image("Что это за растение и как за ним ухаживать?", PNG_1PX)),
    ("vision", "zh", with_image("这张截图里的代码有什么错误？```python\nprint(x)\n```")),
    ("vision", "es", with_image("¿Cuántas personas hay en esta foto? Cuéntalas paso a paso.")),
    ("vision", "de", {"messages": [
        with_image("Was für ein Auto ist das?")["messages"][0],
        {"role": "assistant", "content": "Das ist ein VW Käfer, vermutlich aus den 60er-Jahren."},
        {"role": "user", "content": "Und welche Farbe hat das Auto links daneben?"},
    ]}),
    ("vision", "fr", with_image("Décris cette image en une phrase.", detail="low")),
    # ---- tools ----
    ("tools", "en", with_tools("What's the weather like in Paris tomorrow?",
                               tool("get_weather", "Current weather and forecast", city="City name"))),
    ("tools", "ru", with_tools("Найди в базе данных заказы клиента 1042 и посчитай их сумму.",
                               tool("sql_query", "Run a read-only SQL query", sql="The query"))),
    ("tools", "zh", with_tools("帮我计算一下 2^64 是多少。",
                               tool("calculator", "Evaluate an expression", expr="Expr"))),
    ("tools", "es", with_tools("Reserva una mesa para dos el viernes a las 9 en un restaurante italiano.",
                               tool("book_table", "Book a restaurant table", when="Date and time", size="Guests"))),
    ("tools", "de", with_tools("Schreibe eine Python-Funktion für die Fakultät und führe sie für 10 aus.",
                               tool("run_python", "Execute Python code in a sandbox", code="Source code"))),
    ("tools", "fr", {"messages": [{"role": "user", "content": "Envoie un e-mail à Marie pour confirmer la réunion."}],
                     "functions": [{"name": "send_email", "description": "Send an e-mail",
                                    "parameters": {"type": "object", "properties": {"to": {"type": "string"}}}}]}),
    # ---- long ----
    ("long", "en", "Summarize the key decisions in this meeting transcript:\n\n" + document(EN_MEETING, 40_000)),
    ("long", "ru", "Кратко перескажи этот отчёт:\n\n" + document(RU_REPORT, 40_000)),
    ("long", "zh", "请总结下面这篇文章的要点：\n\n" + document(ZH_ARTICLE, 15_000)),
    ("long", "en", "Review this module for bugs:\n```python\n" + document(PY_MODULE, 40_000) + "\n```"),
    ("long", "es", {"messages": [
        {"role": "system", "content": "Responde usando esta política de devoluciones:\n" + document(ES_POLICY, 40_000)},
        {"role": "user", "content": "¿Puedo devolver unos auriculares después de 30 días?"},
    ]}),
    ("long", "de", {"messages": [
        m for k in range(12) for m in (
            {"role": "user", "content": document(DE_CHAT, 2_500)},
            {"role": "assistant", "content": "Gute Idee! " + document(DE_CHAT[::-1], 1_500)},
        )
    ] + [{"role": "user", "content": "Kannst du das alles zu einem Reiseplan zusammenfassen?"}]}),
]  # fmt: skip


def confusion(results: list[tuple[str, str, str, str]]) -> str:
    """The confusion table (rows: expected, columns: found) and every miss with its reason."""
    counts = Counter((expected, found) for expected, found, _, _ in results)
    width = max(len(i) for i in INTENTS) + 2
    lines = ["expected \\ found".ljust(18) + "".join(i.rjust(width) for i in INTENTS)]
    for expected in INTENTS:
        lines.append(expected.ljust(18) + "".join(str(counts[expected, f]).rjust(width) for f in INTENTS))
    lines += [f"MISS [{lang}] {expected} -> {found}: {reason}" for expected, found, lang, reason in results
              if expected != found]  # fmt: skip
    return "\n".join(lines)


def test_labelled_set_covers_every_intent_and_language():
    assert len(LABELLED) >= 72
    per_intent = Counter(expected for expected, _, _ in LABELLED)
    assert set(per_intent) == set(INTENTS)
    assert all(per_intent[i] >= 10 for i in ("code", "reasoning", "chat")), per_intent
    languages = {lang for _, lang, _ in LABELLED}
    assert {"en", "ru", "zh", "es", "de", "fr"} <= languages
    for intent in ("code", "reasoning", "chat"):
        assert {"en", "ru", "zh", "es", "de", "fr"} <= {lang for e, lang, _ in LABELLED if e == intent}, intent


def test_labelled_set_agreement_at_least_90_percent():
    results = []
    for expected, lang, payload in LABELLED:
        found = classify(request(payload), {}, THRESHOLD)
        results.append((expected, found.name, lang, found.reason))
    agreement = sum(expected == found for expected, found, _, _ in results) / len(results)
    print(f"agreement {agreement:.1%} over {len(results)} prompts\n{confusion(results)}")
    assert agreement >= 0.90, f"agreement {agreement:.1%}\n{confusion(results)}"


# ---- precedence ---------------------------------------------------------------------------------------------

LONG_TEXT = document(EN_MEETING, 40_000)
WEATHER = tool("get_weather", "Weather", city="City")


def everything(**extra: Any) -> dict[str, Any]:
    """An image, tools and a long prompt at once."""
    image = with_image(LONG_TEXT)["messages"][0]
    return {"messages": [image], "tools": [WEATHER], **extra}


def test_image_beats_tools_and_length():
    found = classify(request(everything()), {}, THRESHOLD)
    assert found == Intent("vision", "image part in messages[0].content[1]", "request")


def test_image_in_any_message_counts():
    payload = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG_1PX}}]},
    ]}  # fmt: skip
    assert classify(request(payload), {}, THRESHOLD).reason == "image part in messages[3].content[0]"


def test_tools_beat_length_and_text():
    payload = {"messages": [{"role": "user", "content": "```python\n" + LONG_TEXT}], "tools": [WEATHER, WEATHER]}
    assert classify(request(payload), {}, THRESHOLD) == Intent("tools", "2 tool(s) in tools", "request")


def test_legacy_functions_count_as_tools_and_empty_tools_do_not():
    payload = {"messages": [{"role": "user", "content": "hi"}], "functions": [{"name": "f"}]}
    assert classify(request(payload), {}, THRESHOLD).name == "tools"
    payload = {"messages": [{"role": "user", "content": "Write a poem about rain."}], "tools": []}
    assert classify(request(payload), {}, THRESHOLD).name == "chat"


def test_length_beats_text():
    found = classify(request("Fix the bug in this code:\n```python\n" + document(PY_MODULE, 40_000)), {}, THRESHOLD)
    assert found.name == "long" and found.source == "request"
    assert found.reason.endswith(f"prompt tokens > {THRESHOLD}")


@pytest.mark.parametrize(
    ("tags", "headers", "expected", "where"),
    [
        ({"intent": "code"}, {}, "code", "tags.intent"),
        (None, {"x-omen-intent": "reasoning"}, "reasoning", "x-omen-intent header"),
        ({"intent": "chat"}, {"x-omen-intent": "reasoning"}, "chat", "tags.intent"),  # the body wins
        (None, {"X-Omen-Intent": " Long "}, "long", "x-omen-intent header"),  # any key spelling, value case
        ({"intent": "tools", "priority": "low-cost"}, {}, "tools", "tags.intent"),
    ],
)
def test_hint_beats_everything(tags, headers, expected, where):
    found = classify(request(everything(tags=tags) if tags else everything()), headers, THRESHOLD)
    assert found == Intent(expected, f"hint from {where}", "hint")


def test_auto_hint_means_no_hint():
    assert classify(request(everything(tags={"intent": "auto"})), {}, THRESHOLD).name == "vision"
    assert classify(request(everything()), {"x-omen-intent": "AUTO"}, THRESHOLD).name == "vision"


@pytest.mark.parametrize(
    ("tags", "headers", "param"),
    [
        ({"intent": "coding"}, {}, "tags.intent"),
        ({"intent": ""}, {}, "tags.intent"),
        (None, {"x-omen-intent": "images"}, "x-omen-intent"),
    ],
)
def test_invalid_intent_hint_is_400(tags, headers, param):
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    if tags is not None:
        payload["tags"] = tags
    with pytest.raises(OmenError) as err:
        classify(request(payload), headers, THRESHOLD)
    assert err.value.status == 400 and err.value.param == param
    assert param in err.value.message and "code, reasoning, vision, tools, long, chat" in err.value.message


def test_priority_hint():
    def hint(tags: dict[str, str] | None, headers: dict[str, str]) -> str | None:
        payload: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
        if tags is not None:
            payload["tags"] = tags
        return priority_hint(request(payload), headers)

    assert hint(None, {}) is None
    assert hint({"intent": "code"}, {}) is None
    assert hint({"priority": "low-latency"}, {}) == "low-latency"
    assert hint(None, {"x-omen-priority": "Low-Cost"}) == "low-cost"
    assert hint({"priority": "low-cost"}, {"x-omen-priority": "low-latency"}) == "low-cost"
    with pytest.raises(OmenError) as err:
        hint({"priority": "fast"}, {})
    assert err.value.status == 400 and err.value.param == "tags.priority" and "low-latency, low-cost" in str(err.value)
    with pytest.raises(OmenError) as err:
        hint(None, {"x-omen-priority": "cheap"})
    assert err.value.status == 400 and err.value.param == "x-omen-priority"


# ---- the long threshold -------------------------------------------------------------------------------------


def test_threshold_is_strictly_over_the_counted_prompt_tokens():
    req = request({"messages": [
        {"role": "system", "content": "Summarize for an executive."},
        {"role": "user", "content": document(EN_MEETING, 6_000)},
    ]})  # fmt: skip
    tokens = count_chat(req.messages, "auto")
    assert 1000 < tokens < 2000
    assert classify(req, {}, tokens).name != "long"
    found = classify(req, {}, tokens - 1)
    assert found == Intent("long", f"{tokens} prompt tokens > {tokens - 1}", "request")


def test_short_prompts_are_not_tokenized(monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> int:
        raise AssertionError("tokenized a prompt that cannot be long")

    monkeypatch.setattr(intent_mod, "count_messages", refuse)
    assert classify(request("Write a poem about rain. " * 100), {}, THRESHOLD).name == "chat"
    assert classify(request("Prove that 17 is prime."), {}, 100).name == "reasoning"


def counted_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch the token counter to record how many messages each call counts."""
    calls: list[int] = []
    real = intent_mod.count_messages

    def counting(messages: Any, enc: Any) -> int:
        calls.append(len(messages))
        return real(messages, enc)

    monkeypatch.setattr(intent_mod, "count_messages", counting)
    return calls


def test_counting_stops_once_the_rest_cannot_reach_the_threshold(monkeypatch):
    calls = counted_calls(monkeypatch)
    # 8,000 characters but ~1,000 tokens (a repeated run merges into long tokens), then small messages:
    # once the big one is counted, the others' byte bounds cannot add up to 6,000.
    messages = [{"role": "user", "content": "Count the letters: " + "a" * 8_000}]
    messages += [{"role": "assistant" if k % 2 else "user", "content": "ok, next"} for k in range(5)]
    assert classify(request({"messages": messages}), {}, 6000).name != "long"
    assert calls == [1]


def test_counting_stops_once_over_the_threshold(monkeypatch):
    calls = counted_calls(monkeypatch)
    big = {"role": "user", "content": document(EN_MEETING, 40_000)}
    small = [{"role": "user", "content": document(EN_MEETING, 3_000)} for _ in range(6)]
    req = request({"messages": [*small, big]})
    found = classify(req, {}, THRESHOLD)
    total = count_chat(req.messages, "auto")
    assert calls == [1]  # the largest message alone is over the threshold
    assert found.name == "long" and found.reason.endswith(f"+ prompt tokens > {THRESHOLD} (1 of 7 messages counted)")
    assert int(found.reason.split("+")[0]) < total


def test_bound_is_in_bytes_not_characters():
    # Cuneiform takes several tokens per character: a prompt can have more tokens than characters, so a
    # character count would wrongly rule it out; the UTF-8 byte count does not.
    text = "".join(chr(0x12000 + i % 900) for i in range(3_000))
    req = request(text)
    tokens = count_chat(req.messages, "auto")
    assert tokens > len(text) + 100
    assert classify(req, {}, len(text)) == Intent("long", f"{tokens} prompt tokens > {len(text)}", "request")


# ---- what the text classifier reads -------------------------------------------------------------------------


def test_current_turn_outweighs_the_system_prompt():
    payload = {"messages": [
        {"role": "system", "content": "You are an expert Python and TypeScript programmer. Always answer with code "
         "in ``` fences, explain the algorithm and its complexity, and include unit tests with pytest."},
        {"role": "user", "content": "Thanks! Could you write a short poem for my mom's birthday?"},
    ]}  # fmt: skip
    assert classify(request(payload), {}, THRESHOLD).name == "chat"


def test_follow_up_inherits_the_topic_from_earlier_turns():
    payload = {"messages": [
        {"role": "user", "content": "Write a Python function that merges two sorted lists."},
        {"role": "assistant", "content": "```python\ndef merge(a, b):\n    return sorted(a + b)\n```"},
        {"role": "user", "content": "Now make it faster."},
    ]}  # fmt: skip
    found = classify(request(payload), {}, THRESHOLD)
    assert found.name == "code" and found.source == "classifier"


def test_new_topic_in_the_current_turn_wins_over_earlier_code():
    payload = {"messages": [
        {"role": "user", "content": "Why does my JavaScript fetch() return undefined?"},
        {"role": "assistant", "content": "Because you forgot to `return` the promise in your `.then()` callback."},
        {"role": "user", "content": "Got it, thanks. Different question: prove that the sum of the first n odd "
         "numbers is n²."},
    ]}  # fmt: skip
    assert classify(request(payload), {}, THRESHOLD).name == "reasoning"


def test_weighted_texts_rule():
    payload = {"messages": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "U2"},
        {"role": "tool", "content": "T", "tool_call_id": "c1"},
        {"role": "assistant", "content": "A2"},
        {"role": "user", "content": "U3"},
        {"role": "user", "content": [{"type": "text", "text": "U4"}]},
    ]}  # fmt: skip
    parts = weighted_texts(request(payload))
    assert sorted(parts) == sorted([("U4", 1.0), ("U3", 1.0), ("A2", 0.25), ("U2", 0.5), ("U1", 0.5), ("S", 0.1)])


def test_without_user_messages_the_system_prompt_is_the_request():
    payload = {"messages": [{"role": "system", "content": "Write a Python function that reverses a linked list."}]}
    assert weighted_texts(request(payload)) == [(payload["messages"][0]["content"], 1.0)]
    assert classify(request(payload), {}, THRESHOLD).name == "code"


def test_reason_names_the_signals():
    found = classify(request("```python\ndef f(x):\n    return x + 1\n```\nWhy does this raise a TypeError?"), {},
                     THRESHOLD)  # fmt: skip
    assert found.name == "code" and found.source == "classifier"
    assert "code signals: code fence" in found.reason
    assert classify(request("Hello there!"), {}, THRESHOLD).reason.startswith("1 chat signal: 'hello'")
    assert classify(request("ok"), {}, THRESHOLD) == Intent("chat", "no code or reasoning signals", "classifier")
