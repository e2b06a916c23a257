# The Airflow image with bcdv installed (used by docker-compose.yml). Installing the package
# also registers its provider entry point, so the UI lists the bcdv connection types.
FROM apache/airflow:3.3.2-python3.11
USER root
# Mount points of the named volumes, owned by the airflow user (a new volume copies them).
RUN mkdir -p /opt/airflow/bcdv-staging /opt/airflow/auth /opt/airflow/ca /emulators \
 && chown -R airflow:root /opt/airflow/bcdv-staging /opt/airflow/auth /opt/airflow/ca /emulators
USER airflow
COPY --chown=airflow:root requirements.lock pyproject.toml README.md /opt/bcdv/
COPY --chown=airflow:root plugins /opt/bcdv/plugins
# The emulators (their own distribution) serve compose's demo profile; bcdv does not import
# them, so a production image leaves them out: docker build --build-arg BCDV_EMULATORS=0 .
ARG BCDV_EMULATORS=1
COPY --chown=airflow:root emulators /opt/bcdv/emulators
RUN pip install --no-cache-dir -r /opt/bcdv/requirements.lock \
 && pip install --no-cache-dir --no-deps -e /opt/bcdv \
 && if [ "$BCDV_EMULATORS" = 1 ]; then \
      pip install --no-cache-dir --no-deps -e /opt/bcdv/emulators; fi
