# The aggregator image (also the monitor service, `tally monitors run`, the trace writer and the
# queue sampler). Build context: the repository root.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY . ./
RUN pip install --no-cache-dir ".[server,monitors,sampler]" && useradd --system --uid 10001 tally
USER tally
EXPOSE 9464
ENTRYPOINT ["tally-aggregator"]
CMD ["run"]
