# ruff: noqa: RUF001  (the feature table is multilingual text on purpose)
"""Lexical intent classifier for ``model="auto"``: is a prompt about code, reasoning or plain chat?

No network, no model: a table of weighted features (``FEATURES``) is matched against the lower-cased
text and the weighted hits are summed per category. A feature is a literal pattern (in a pattern
``DIGIT`` stands for any ASCII digit 0-9 and ``ALPHA`` for any ASCII letter a-z) with optional boundary flags:

- ``LEFT`` / ``RIGHT``: the character before / after the match is not a word character
  (``str.isalnum()`` or ``_``, except in scripts written without spaces such as Chinese), so ``"bug"``
  does not fire inside ``"debugger"`` or Russian ``"багаж"`` but ``"python"`` does in ``"用python写"``;
- ``LEFT_ASCII``: the character before is not an ASCII letter, digit, ``_`` or ``.``, so a number glued to
  Chinese text (``"有5个"``) still counts while ``"x2"`` and ``"3.11"``'s second part do not.

Hits are counted at every start position (overlapping), each feature capped at ``CAP`` so that one
repeated word cannot decide alone. Scores: sum of weight x hits per category. ``decide`` turns the
counts into (intent, reason): code or reasoning when its score reaches ``MIN_SCORE`` and beats the chat
score (ties between code and reasoning go to code: a programming task often carries maths words);
otherwise chat.

This module is the pure-Python twin of ``omen._fast.intent``. The table and ``decide`` are defined
only here and imported by the compiled twin, so the two can differ only in how they count hits
(``scan``), which tests/fast/test_intent.py checks on random and sampled texts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CODE, REASONING, CHAT = 0, 1, 2
CATEGORIES = ("code", "reasoning", "chat")

LEFT, RIGHT, LEFT_ASCII = 1, 2, 4
WORD = LEFT | RIGHT
DIGIT = "\x00"  # in a pattern: any ASCII digit
ALPHA = "\x01"  # in a pattern: any ASCII letter a-z (the text is lower-cased)

CAP = 3  # hits counted per feature and text
MIN_SCORE = 4  # a code/reasoning score below this is too weak to leave chat

# (pattern, category, weight, label, flags); built by _add below, frozen into a tuple at the end.
_table: list[tuple[str, int, int, str, int]] = []

_LABELS = {
    "```": "code fence",
    "traceback (most recent call last)": "stack trace",
    "\n    ": "indented lines",
    "\n\t": "indented lines",
    "`": "backticks",
}


def _label(pattern: str) -> str:
    if pattern in _LABELS:
        return _LABELS[pattern]
    return repr(pattern)


def _add(category: int, weight: int, flags: int, *patterns: str, label: str | None = None) -> None:
    for p in patterns:
        _table.append((p, category, weight, label or _label(p), flags))


# ---- code ----------------------------------------------------------------------------------------
# Syntax and tooling (language independent).
_add(CODE, 4, 0, "```", "traceback (most recent call last)", "#include", "console.log", "system.out", "std::")
_add(CODE, 4, 0, "public static", "__init__", "pip install", "npm install", "#!/", "select * from", "insert into")
_add(CODE, 4, 0, "create table", "segmentation fault", "nullpointer", "stack trace", "stacktrace", "kubectl")
_add(CODE, 3, 0, "print(", "printf(", "println", "&&", "+=", "();", "){", ") {", "};", "<div")
_add(CODE, 3, LEFT, "def ", "fn ", "func ", "const ", "let mut", "var ", "#[derive", "async ", "await ", "self.")
_add(CODE, 2, LEFT, "import ", "int ", "void ", "null", "error")
_add(CODE, 3, 0, "error:", "undefined", "/*")
_add(CODE, 2, 0, "exception")
_add(CODE, 2, 0, "=>", "->", "!=", "==", "||", "</", "/>", ";\n", "{\n", "}\n")
_add(CODE, 1, 0, "\n    ", "\n\t")
_add(CODE, 2, 0, "`", "()")
_add(CODE, 2, 0, " --" + ALPHA, label="command-line flag")
_add(CODE, 2, 0, ALPHA + "_" + ALPHA, label="snake_case name")
# File names and extensions.
_add(CODE, 3, RIGHT, ".py", ".js", ".ts", ".tsx", ".jsx", ".go", ".rs", ".java", ".cpp", ".hpp", ".rb", ".php")
_add(CODE, 3, RIGHT, ".sh", ".yml", ".yaml", ".json", ".toml", ".sql", ".html", ".css", ".kt", ".cs", ".ipynb")
_add(CODE, 3, 0, "makefile", "dockerfile", "package.json", "requirements.txt", "cargo.toml", "go.mod")
# Languages, frameworks, tools: names that mostly mean programming decide alone (4); ambiguous ones
# ("java", "rust", "react" the verb) need one more signal.
_add(CODE, 4, WORD, "javascript", "typescript", "golang", "kotlin", "php", "node.js", "nodejs", "c++", "c#", "python")
_add(CODE, 4, WORD, "leetcode", "django", "numpy", "pytorch", "tensorflow", "docker", "kubernetes", "github", "nginx")
_add(CODE, 4, WORD, "powershell", "regex", "regexp", "json", "yaml", "graphql", "webpack", "cython", "asyncio", "css")
_add(CODE, 4, WORD, "html", "sql", "mysql", "sqlite", "postgres", "postgresql", "flexbox", "spring boot", "cron")
_add(CODE, 4, WORD, "cronjob", "crontab", "jquery", "next.js", "nextjs", "vue.js", "laravel", "fastapi", "redis")
_add(CODE, 4, WORD, "mongodb", "elasticsearch", "kafka", "terraform", "ansible", "localhost", "useeffect", "usestate")
_add(CODE, 4, WORD, "gradle", "stdin", "stdout", "argv", "int main", "mutex", "goroutine", "segfault", "rebase")
_add(CODE, 4, 0, "go语言", "go 语言")
_add(CODE, 3, WORD, "java", "haskell", "bash", "react", "vue", "angular", "pandas", "scala", "lua", "perl", "git")
_add(CODE, 3, WORD, "api", "apis", "xml", "sdk", "div", "props", "npm", "ci/cd")
_add(CODE, 3, WORD, "enum", "tuple", "curl", "orm", "crud", "jwt", "oauth", "venv", "conda", "jupyter", "cmake")
_add(CODE, 2, WORD, "rust", "flask", "cli", "linux", "unix", "lambda", "ide", "join", "char", "bool", "dict", "csv")
_add(CODE, 2, WORD, "port", "порт", "vim", "emacs", "vscode", "heap", "queue", "yarn", "cargo")
_add(CODE, 3, WORD, "eslint", "vite", "pnpm", "pip", "jenkins", "trie", "babel")
_add(CODE, 1, WORD, "app", "apps", "list", "insert")
_add(CODE, 4, LEFT, "dataframe", "expresión regular", "expression régulière", "regulär")
# Programming vocabulary (English, and words several Latin-script languages share).
_add(CODE, 4, 0, "regular expression", "refactor", "pull request", "merge conflict", "memory leak")
_add(CODE, 4, 0, "unit-test", "race condition", "deadlock", "linked list", "list comprehension", "unit test", "pytest")
_add(CODE, 4, LEFT, "docstring", "borrow checker", "websocket", "virtualenv")
_add(CODE, 3, LEFT, "group by", "order by", "failing test", "test suite", "type hint", "decorator", "iterator")
_add(CODE, 3, LEFT, "microservice", "maven")
_add(CODE, 2, LEFT, "test case", "closure", "column", "component", "render", "migration")
_add(CODE, 3, LEFT, "code", "coding", "compil", "debug", "program", "script", "snippet", "syntax", "runtime")
_add(CODE, 3, LEFT, "variable", "array", "boolean", "recursi", "callback", "pointer", "constructor", "hashmap")
_add(CODE, 3, LEFT, "hash map", "binary tree", "binary search", "for loop", "while loop", "source code", "codebase")
_add(CODE, 3, LEFT, "database", "backend", "frontend", "endpoint", "command line", "repository", "stack overflow")
_add(CODE, 3, WORD, "bug", "bugs", "o(n", "o(1)", "o(log", "big-o", "repo", "struct")
_add(CODE, 2, LEFT, "function", "method", "class", "string", "loop", "parameter", "return", "implement", "algorithm")
_add(CODE, 2, LEFT, "software", "developer", "framework", "module", "dependenc", "deploy", "server", "query")
_add(CODE, 2, LEFT, "schema", "interface", "inheritance", "thread", "crash", "terminal", "commit", "parse", "parsing")
_add(CODE, 1, LEFT, "integer", "library", "object", "package", "argument", "website", "compute", "generator")
# Russian.
_add(CODE, 4, LEFT, "напиши код", "регулярн", "рефактор", "юнит-тест", "эндпоинт", "многопоточн")
_add(CODE, 3, LEFT, "операционн")
_add(CODE, 3, LEFT, "функци", "код", "скрипт", "компил", "отлад", "массив", "рекурси", "фреймворк", "репозитори")
_add(CODE, 3, LEFT, "коммит", "парсер", "питон", "бэкенд", "фронтенд", "асинхрон", "база данных", "базы данных")
_add(CODE, 3, LEFT, "базу данных", "программист", "программирован")
_add(CODE, 3, WORD, "баг", "баги", "багу")
_add(CODE, 2, LEFT, "программ", "переменн", "метод", "исключени", "алгоритм", "библиотек", "сервер", "интерфейс")
_add(CODE, 2, LEFT, "падает", "вылетает", "утечк", "сортировк", "сборк", "миграци", "цикл", "компонент")
_add(CODE, 2, WORD, "класс", "класса", "классе")
_add(CODE, 1, LEFT, "ошибк", "запрос", "строк", "список", "разработ", "приложени", "сайт", "тест", "элемент")
# Chinese (and a little Japanese).
_add(CODE, 4, 0, "代码", "函数", "链表", "正则", "重构", "单元测试", "爬虫", "内存泄漏", "関数", "コード")
_add(CODE, 3, 0, "编程", "脚本", "编译", "报错", "调试", "数组", "字符串", "二叉树", "变量", "递归", "数据库")
_add(CODE, 3, 0, "前端", "后端", "测试用例", "线程", "并发", "组件", "渲染", "プログラム")
_add(CODE, 2, 0, "程序", "异常", "算法", "接口", "部署", "服务器", "实现", "循环", "排序", "框架", "编写")
_add(CODE, 3, 0, "端口", "进程")
_add(CODE, 2, 0, "内存")
_add(CODE, 1, 0, "错误", "写一个", "开发", "方法", "文件", "读取", "请求", "数据")
# Spanish, Portuguese, German, French.
_add(CODE, 4, LEFT, "código", "codigo", "quellcode")
_add(CODE, 3, LEFT, "función", "funcion", "função", "funktion", "fonction", "depurar", "débogu", "skript")
_add(CODE, 3, LEFT, "base de datos", "base de données", "datenbank", "bucle", "boucle", "schleife", "kompilier")
_add(CODE, 3, LEFT, "fehlermeldung", "programación", "programmation", "programmier", "récursi")
_add(CODE, 2, LEFT, "paginad", "dictionnaire")
_add(CODE, 2, WORD, "trier")
_add(CODE, 1, LEFT, "fehler", "erreur", "servidor", "consulta", "requête", "klasse", "clase", "classe")
_add(CODE, 1, WORD, "lista", "liste")

# ---- reasoning -----------------------------------------------------------------------------------
# Maths notation and numeric shapes.
_add(REASONING, 4, 0, "∑", "∫", "∂", label=None)
_add(REASONING, 3, 0, "√", "π", "≤", "≥", "≠", "≈", "∞", "²", "³", "^2", "^3", "x^", "f(x)", "dy/dx")
_add(REASONING, 2, 0, DIGIT + "+" + DIGIT, DIGIT + " + " + DIGIT, DIGIT + "*" + DIGIT, DIGIT + " * " + DIGIT,
     DIGIT + "×" + DIGIT, DIGIT + " × " + DIGIT, DIGIT + "÷" + DIGIT, DIGIT + " ÷ " + DIGIT,
     DIGIT + "=" + DIGIT, DIGIT + " = " + DIGIT, DIGIT + "^" + DIGIT, DIGIT + " - " + DIGIT,
     DIGIT + " / " + DIGIT, label="arithmetic")  # fmt: skip
_add(REASONING, 2, LEFT_ASCII | RIGHT, DIGIT + "x", DIGIT + "y", label="algebra term")
_add(REASONING, 2, 0, DIGIT + "%", label="percentage")
_add(REASONING, 1, LEFT_ASCII, DIGIT, label="numbers")
# English.
_add(REASONING, 4, LEFT, "prove that", "theorem", "equation", "integral", "derivative", "probabilit", "calculus")
_add(REASONING, 4, LEFT, "expected value", "divisible", "hypotenuse", "determinant", "eigenvalue", "syllogism")
_add(REASONING, 4, LEFT, "solve for", "knights and knaves")
_add(REASONING, 3, LEFT, "prove", "proof", "lemma", "corollary", "step by step", "step-by-step", "puzzle", "riddle")
_add(REASONING, 3, LEFT, "calculat", "solve", "inequalit", "differentiat", "limit of", "converge", "remainder")
_add(REASONING, 3, LEFT, "factorial", "gcd", "lcm", "square root", "what is the value", "find all", "how old")
_add(REASONING, 3, LEFT, "km/h", "mph", "triangle", "radius", "area of", "perimeter", "volume of", "geometry")
_add(REASONING, 3, LEFT, "algebra", "math", "arithmetic", "deduce", "brain teaser", "always lies", "tells the truth")
_add(REASONING, 3, LEFT, "if and only if", "induction", "logic puzzle", "prime number", "game theory", "permutation")
_add(REASONING, 3, LEFT, "standard deviation", "combinator", "marbles", "show that")
_add(REASONING, 2, LEFT, "older than", "younger than", "taller than", "shorter than", "heavier than")
_add(REASONING, 1, LEFT, "who is the")
_add(REASONING, 2, LEFT, "how many", "logic", "reasoning", "think carefully", "percent", "average", "median")
_add(REASONING, 2, LEFT, "ratio", "proportion", "prime", "modulo", "sum of", "product of", "sqrt", "years old")
_add(REASONING, 2, LEFT, "per hour", "rectangle", "circle", "angle", "matrix", "fraction", "digits", "maximize")
_add(REASONING, 2, LEFT, "minimize", "liar", "which of the following", "find the", "contradiction", "odds")
_add(REASONING, 2, LEFT, "in total", "altogether", "twice as", "times as", "half as", "statistic", "variance")
_add(REASONING, 2, LEFT, "combination", "dice", "lying", "your reasoning", "if all")
_add(REASONING, 3, LEFT, "how many ways", "wie viele möglichkeiten", "сколькими способами", "cálculo")
_add(REASONING, 1, LEFT, "how much", "how long", "integer", "vector", "therefore", "estimate", "optimal", "analy")
_add(REASONING, 1, LEFT, "minimum", "maximum", "explain why", "infer", "sequence", "series", "miles", "meters")
_add(REASONING, 1, LEFT, "more than the", "less than the", "coin", "apples")
# Russian.
_add(REASONING, 4, LEFT, "докаж", "теорем", "уравнени", "интеграл", "вероятност")
_add(REASONING, 3, LEFT, "доказ", "вычисл", "посчитай", "подсчитай", "рассчитай", "неравенств", "загадк")
_add(REASONING, 3, LEFT, "головоломк", "шаг за шагом", "пошагово", "производн", "км/ч", "простое число")
_add(REASONING, 3, LEFT, "простых чисел", "простые числа", "делится", "делимост", "чему равн", "треугольник")
_add(REASONING, 3, LEFT, "периметр", "радиус", "математи", "алгебр", "геометри", "лжец")
_add(REASONING, 2, LEFT, "сколько", "реши", "поэтапно", "рассужда", "логик", "логическ", "процент", "скорост")
_add(REASONING, 2, LEFT, "остаток", "найдите", "площадь", "матриц", "возраст", "дробь", "корень", "квадрат")
_add(REASONING, 2, LEFT, "рыцар", "задача на", "кубик", "монет")
_add(REASONING, 2, WORD, "угол")
_add(REASONING, 1, LEFT, "задач", "найди", "среднее", "сумма", "сумму", "если")
# Chinese (and a little Japanese).
_add(REASONING, 4, 0, "求证", "证明", "方程", "概率", "导数", "定理", "証明")
_add(REASONING, 3, 0, "计算", "求解", "一步一步", "逐步", "数学", "微分", "几何", "三角形", "周长", "半径")
_add(REASONING, 3, 0, "质数", "素数", "整除", "余数", "谜题", "推导", "说谎", "計算", "标准差", "多少种")
_add(REASONING, 3, 0, "除以", "乘以")
_add(REASONING, 2, 0, "多少", "几个", "推理", "逻辑", "分步", "积分", "极限", "面积", "速度", "平均", "百分之")
_add(REASONING, 2, 0, "等于", "年龄", "真话", "谜语", "いくつ", "骰子", "硬币", "排列", "统计")
_add(REASONING, 2, 0, "相距", "减去", "星期几")
_add(REASONING, 1, 0, "公里", "小时", "假设", "倍", "最小", "最大", "如果", "那么")
# Spanish, Portuguese, German, French.
_add(REASONING, 4, LEFT, "demuestra", "demostrar", "ecuación", "ecuacion", "teorema", "beweis", "gleichung")
_add(REASONING, 4, LEFT, "wahrscheinlichkeit", "démontr", "équation", "théorème", "probabilid")
_add(REASONING, 3, LEFT, "resuelve", "resolver", "paso a paso", "triángulo", "números primos", "acertijo")
_add(REASONING, 3, LEFT, "berechne", "schritt für schritt", "dreieck", "primzahl", "rätsel", "prouve", "résous")
_add(REASONING, 4, LEFT, "zeige, dass", "zeige dass", "zeigen sie, dass")
_add(REASONING, 3, LEFT, "montrer que", "montrez que", "muestra que", "покажите, что", "покажи, что")
_add(REASONING, 2, LEFT, "ungerade", "summe der")
_add(REASONING, 3, LEFT, "résoudre", "étape par étape", "nombres premiers", "énigme", "rechteck")
_add(REASONING, 2, LEFT, "umfang", "fläche", "doppelt so", "baraja", "entiers", "круг", "divided by", "multiplied by")
_add(REASONING, 2, LEFT, "minus", "squared", "cubed")
_add(REASONING, 2, WORD, "kreis")
_add(REASONING, 1, LEFT, "wie groß", "plus", "сторон")
_add(REASONING, 3, WORD, "calcula", "calcular", "calcule", "calculez", "löse")
_add(REASONING, 2, LEFT, "cuánt", "cuant", "quantos", "quantas", "wie viel", "combien", "porcentaje", "promedio")
_add(REASONING, 2, LEFT, "prozent", "durchschnitt", "pourcentage", "moyenne", "lógica", "logik", "logique")
_add(REASONING, 3, LEFT, "de combien de façons", "de cuántas maneras", "de cuántas formas")
_add(REASONING, 2, LEFT, "anzuordnen", "anordnen")
_add(REASONING, 1, LEFT, "quanto", "möglichkeiten", "arrange", "y a-t-il")

# ---- chat ----------------------------------------------------------------------------------------
_add(CHAT, 4, LEFT, "poem", "haiku", "limerick", "cover letter", "recipe", "how are you")
_add(CHAT, 3, LEFT, "poetry", "sonnet", "lyrics", "story", "fairy tale", "joke")
_add(CHAT, 2, LEFT, "essay", "email", "e-mail", "toast", "speech", "translate", "summar", "rephrase", "proofread")
_add(CHAT, 2, LEFT, "cook", "bake", "dinner", "restaurant", "recommend", "advice", "hello", "funny", "movie")
_add(CHAT, 2, LEFT, "novel", "travel", "vacation", "weather", "gift", "birthday", "wedding", "relationship")
_add(CHAT, 2, LEFT, "weekend", "what do you think", "tell me about", "who was", "history of", "capital of")
_add(CHAT, 2, LEFT, "pros and cons")
_add(CHAT, 2, WORD, "song", "tips", "trip")
_add(CHAT, 1, LEFT, "letter", "suggest", "thank", "film", "book", "friend", "feel", "rewrite", "meaning of")
_add(CHAT, 1, WORD, "hi", "hey")
# Russian.
_add(CHAT, 4, LEFT, "как дела", "стих", "рецепт")
_add(CHAT, 3, LEFT, "сказк", "анекдот", "поздравлени")
_add(CHAT, 2, LEFT, "привет", "здравствуй", "рассказ", "расскажи", "песн", "приготов", "ужин", "переведи")
_add(CHAT, 2, LEFT, "письмо", "посоветуй", "порекомендуй", "фильм", "путешеств", "отпуск", "погод", "шутк")
_add(CHAT, 2, LEFT, "подарок", "день рождения", "перескажи", "эссе")
_add(CHAT, 1, LEFT, "перевод", "совет", "книг", "спасибо", "резюме")
# Chinese (and a little Japanese).
_add(CHAT, 4, 0, "食谱", "菜谱")
_add(CHAT, 3, 0, "诗", "故事", "笑话", "做菜", "祝福")
_add(CHAT, 2, 0, "你好", "翻译", "推荐", "旅行", "旅游", "电影", "邮件", "生日", "礼物", "天气", "总结", "心情")
_add(CHAT, 2, 0, "周末", "こんにちは")
_add(CHAT, 1, 0, "怎么做", "谢谢", "建议", "聊", "介绍")
# Spanish, Portuguese, German, French.
_add(CHAT, 4, LEFT, "poema", "receta", "receita", "gedicht", "rezept", "poème", "recette", "cómo estás")
_add(CHAT, 4, LEFT, "wie geht es", "comment ça va", "comment vas-tu")
_add(CHAT, 3, LEFT, "cuento", "chiste", "blague", "witz")
_add(CHAT, 2, LEFT, "traduce", "recomienda", "recomiénda", "consejo", "viaje", "película", "cumpleaños", "übersetze")
_add(CHAT, 2, LEFT, "empfehl", "empfiehl", "tipps", "reise", "urlaub", "geburtstag", "abendessen", "geschichte")
_add(CHAT, 2, LEFT, "traduis", "traduire", "recommande", "conseil", "voyage", "anniversaire", "dîner", "olá")
_add(CHAT, 2, WORD, "hola", "hallo", "bonjour", "salut", "cena")
_add(CHAT, 1, LEFT, "gracias", "correo", "historia", "danke", "merci", "histoire")

FEATURES: tuple[tuple[str, int, int, str, int], ...] = tuple(_table)


def _check_table() -> None:
    for pattern, category, weight, _, flags in FEATURES:
        # Patterns are matched against lower-cased text, so an upper-case pattern could never match.
        assert pattern and pattern == pattern.lower(), pattern
        assert category in (CODE, REASONING, CHAT) and weight > 0 and 0 <= flags <= 7, pattern


_check_table()

_ASCII_WORD = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.")


def _is_word(ch: str) -> bool:
    # str.isalnum() of one character is CPython's Py_UNICODE_ISALNUM, which the compiled twin calls.
    if not (ch.isalnum() or ch == "_"):
        return False
    # Scripts written without spaces (Thai, CJK, kana, Hangul, full-width forms) do not make a word
    # longer: "python" in "写一个python脚本" is a word of its own.
    o = ord(ch)
    return not (
        0x0E00 <= o <= 0x0E7F
        or 0x2E80 <= o <= 0x9FFF
        or 0xAC00 <= o <= 0xD7AF
        or 0xF900 <= o <= 0xFAFF
        or 0xFF00 <= o <= 0xFFEF
        or 0x20000 <= o <= 0x3FFFF
    )


def _bounded(text: str, start: int, end: int, flags: int) -> bool:
    if flags & LEFT and start > 0 and _is_word(text[start - 1]):
        return False
    if flags & RIGHT and end < len(text) and _is_word(text[end]):
        return False
    return not (flags & LEFT_ASCII and start > 0 and text[start - 1] in _ASCII_WORD)


_CLASSES = {DIGIT: "[0-9]", ALPHA: "[a-z]"}


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    # A zero-width lookahead finds every start position, overlapping ones included, like the C scan.
    body = "".join(_CLASSES.get(ch) or re.escape(ch) for ch in pattern)
    return re.compile(f"(?={body})")


def _has_wildcard(pattern: str) -> bool:
    return DIGIT in pattern or ALPHA in pattern


_LITERALS = [(j, p, f) for j, (p, _c, _w, _l, f) in enumerate(FEATURES) if not _has_wildcard(p)]
_WILDCARDS = [(j, _wildcard_regex(p), len(p), f) for j, (p, _c, _w, _l, f) in enumerate(FEATURES) if _has_wildcard(p)]


def scan(text: str) -> list[int]:
    """Hits per feature (index as in ``FEATURES``) in ``text.lower()``, each capped at ``CAP``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    low = text.lower()
    counts = [0] * len(FEATURES)
    for j, pattern, flags in _LITERALS:
        i = low.find(pattern)
        if i < 0:
            continue
        n, size = 0, len(pattern)
        while i >= 0:
            if not flags or _bounded(low, i, i + size, flags):
                n += 1
                if n == CAP:
                    break
            i = low.find(pattern, i + 1)
        counts[j] = n
    for j, regex, size, flags in _WILDCARDS:
        n = 0
        for m in regex.finditer(low):
            if not flags or _bounded(low, m.start(), m.start() + size, flags):
                n += 1
                if n == CAP:
                    break
        counts[j] = n
    return counts


def _num(x: float) -> str:
    return f"{x:g}"


def decide(counts: Iterable[tuple[int, float]]) -> tuple[str, str]:
    """(intent, reason) from (feature index, hits) pairs: the non-zero counts in index order (hits may be
    weighted, see ``classify_weighted``). Both twins call this, so equal counts give equal answers."""
    scores = [0.0, 0.0, 0.0]
    hits = [0.0, 0.0, 0.0]
    by_label: list[dict[str, float]] = [{}, {}, {}]
    for j, c in counts:
        _pattern, category, weight, label, _flags = FEATURES[j]
        scores[category] += weight * c
        hits[category] += c
        labels = by_label[category]
        labels[label] = labels.get(label, 0.0) + weight * c
    code, reasoning, chat = scores
    top = CODE if code >= reasoning else REASONING
    table = f"(scores: code {_num(code)}, reasoning {_num(reasoning)}, chat {_num(chat)})"
    if scores[top] >= MIN_SCORE and scores[top] > chat:
        return CATEGORIES[top], f"{_signals(hits[top], top)}: {_top_labels(by_label[top])} {table}"
    if chat and chat >= scores[top]:
        return "chat", f"{_signals(hits[CHAT], CHAT)}: {_top_labels(by_label[CHAT])} {table}"
    if not code and not reasoning:
        return "chat", "no code or reasoning signals"
    return "chat", f"weak signals, below {MIN_SCORE} {table}"


def _signals(n: float, category: int) -> str:
    return f"{_num(n)} {CATEGORIES[category]} signal{'' if n == 1 else 's'}"


def _top_labels(contributions: dict[str, float], limit: int = 3) -> str:
    # Largest contribution first; dicts keep insertion (table) order, and sorted() is stable for ties.
    ranked = sorted(contributions, key=lambda label: -contributions[label])
    shown = ", ".join(ranked[:limit])
    return shown + ", ..." if len(ranked) > limit else shown


def classify_text(text: str) -> tuple[str, str]:
    """("code" | "reasoning" | "chat", short reason) for one text."""
    return decide([(j, c) for j, c in enumerate(scan(text)) if c])


def classify_weighted(parts: Iterable[tuple[str, float]]) -> tuple[str, str]:
    """Like ``classify_text`` over several texts, each text's hits multiplied by its weight."""
    totals = [0.0] * len(FEATURES)
    for text, weight in parts:
        if not text or not weight:
            continue
        for j, c in enumerate(scan(text)):
            if c:
                totals[j] += weight * c
    return decide([(j, t) for j, t in enumerate(totals) if t])
