output "cluster_arn" {
  description = "ARN of the MSK Serverless cluster."
  value       = aws_msk_serverless_cluster.this.arn
}

output "bootstrap_servers" {
  description = "Value for KAFKA_BOOTSTRAP_SERVERS (SASL/IAM endpoint, port 9098)."
  value       = data.aws_msk_bootstrap_brokers.this.bootstrap_brokers_sasl_iam
}

output "client_security_group_id" {
  description = "Security group to attach to every task that talks to the cluster."
  value       = aws_security_group.client.id
}

output "producer_policy_arn" {
  description = "IAM policy: produce to the environment's topics."
  value       = aws_iam_policy.producer.arn
}

output "consumer_policy_arn" {
  description = "IAM policy: consume the environment's topics and use its consumer groups."
  value       = aws_iam_policy.consumer.arn
}

output "admin_policy_arn" {
  description = "IAM policy: create and configure the environment's topics."
  value       = aws_iam_policy.admin.arn
}

output "client_env" {
  description = "Non-secret Kafka environment variables for Tidelake containers using this cluster."
  value = {
    KAFKA_BOOTSTRAP_SERVERS = data.aws_msk_bootstrap_brokers.this.bootstrap_brokers_sasl_iam
    KAFKA_SECURITY_PROTOCOL = "SASL_SSL"
    KAFKA_SASL_MECHANISM    = "OAUTHBEARER"
    TIDELAKE_TOPIC_PREFIX   = var.topic_prefix
  }
}
