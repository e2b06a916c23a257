# The Airflow image with bcdv installed (used by docker-compose.yml). Installing the package
# also registers its provider entry point, so the UI lists the bcdv connection types.
FROM apache/airflow:3.3.2-python3.11
USER root
# Mount points of the named volumes, owned by the airflow user (a new volume copies them).
RUN mkdir -p /opt/airflow/bcdv-staging /opt/airflow/auth /emulators \
 && chown -R airflow:root /opt/airflow/bcdv-staging /opt/airflow/auth /emulators
USER airflow
COPY --chown=airflow:root requirements.lock pyproject.toml README.md /opt/bcdv/
COPY --chown=airflow:root plugins /opt/bcdv/plugins
# The emulators (their own distribution) serve the demo profile; a production image may
# leave them out: bcdv does not import them.
COPY --chown=airflow:root emulators /opt/bcdv/emulators
RUN pip install --no-cache-dir -r /opt/bcdv/requirements.lock \
 && pip install --no-cache-dir --no-deps -e /opt/bcdv -e /opt/bcdv/emulators
