output "environment_id" {
  description = "ID of the Confluent Cloud environment."
  value       = confluent_environment.this.id
}

output "cluster_id" {
  description = "ID of the Confluent Cloud Kafka cluster."
  value       = confluent_kafka_cluster.this.id
}

output "bootstrap_servers" {
  description = "Value for KAFKA_BOOTSTRAP_SERVERS (without the SASL_SSL:// scheme)."
  value       = replace(confluent_kafka_cluster.this.bootstrap_endpoint, "SASL_SSL://", "")
}

output "topic_names" {
  description = "Physical names of the contract topics, keyed by logical name."
  value       = { for k, t in confluent_kafka_topic.contract : k => t.topic_name }
}

output "ingest_secret_arn" {
  description = "Secrets Manager secret (JSON username/password) with the ingestion API key."
  value       = aws_secretsmanager_secret.client["ingest"].arn
}

output "producer_secret_arn" {
  description = "Secrets Manager secret (JSON username/password) with the producer API key."
  value       = aws_secretsmanager_secret.client["producer"].arn
}

output "secrets_kms_key_arn" {
  description = "KMS key that encrypts the API-key secrets; task execution roles need kms:Decrypt on it."
  value       = aws_kms_key.secrets.arn
}

output "client_env" {
  description = "Non-secret Kafka environment variables for Tidelake containers using this cluster."
  value = {
    KAFKA_BOOTSTRAP_SERVERS = replace(confluent_kafka_cluster.this.bootstrap_endpoint, "SASL_SSL://", "")
    KAFKA_SECURITY_PROTOCOL = "SASL_SSL"
    KAFKA_SASL_MECHANISM    = "PLAIN"
    TIDELAKE_TOPIC_PREFIX   = var.topic_prefix
  }
}
