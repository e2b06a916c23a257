# The Airflow image with bcdv installed (used by docker-compose.yml).
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root requirements.lock pyproject.toml README.md /opt/bcdv/
COPY --chown=airflow:root plugins /opt/bcdv/plugins
RUN pip install --no-cache-dir -r /opt/bcdv/requirements.lock \
 && pip install --no-cache-dir --no-deps -e /opt/bcdv
