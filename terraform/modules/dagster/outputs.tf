output "webserver_url" {
  description = "URL of the Dagster UI (point a DNS name covered by the certificate at webserver_alb_dns_name)."
  value       = "https://${aws_lb.webserver.dns_name}"
}

output "webserver_alb_dns_name" {
  description = "DNS name of the webserver's load balancer (target of a CNAME or alias record)."
  value       = aws_lb.webserver.dns_name
}

output "webserver_alb_zone_id" {
  description = "Hosted zone of the webserver's load balancer (for a Route 53 alias record)."
  value       = aws_lb.webserver.zone_id
}

output "cluster_arn" {
  description = "ARN of the ECS cluster (the API service runs in it too)."
  value       = aws_ecs_cluster.this.arn
}

output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "run_task_definition_family" {
  description = "Task definition family the EcsRunLauncher starts runs from (DAGSTER_RUN_TASK_DEFINITION)."
  value       = aws_ecs_task_definition.run.family
}

output "task_security_group_id" {
  description = "Security group of every Dagster task."
  value       = aws_security_group.tasks.id
}

output "run_role_arn" {
  description = "IAM role of the run tasks and the ingestion worker."
  value       = aws_iam_role.run.arn
}

output "launcher_role_arn" {
  description = "IAM role of the webserver and daemon tasks."
  value       = aws_iam_role.launcher.arn
}

output "execution_role_arn" {
  description = "ECS task execution role (image pull, logs, secrets)."
  value       = aws_iam_role.execution.arn
}

output "db_address" {
  description = "Host name of Dagster's Postgres (DAGSTER_PG_HOST)."
  value       = aws_db_instance.this.address
}

output "db_password_secret_arn" {
  description = "Secrets Manager secret with DAGSTER_PG_PASSWORD."
  value       = aws_secretsmanager_secret.db.arn
}

output "log_group_name" {
  description = "CloudWatch log group of the webserver, daemon, ingestion worker and runs (stream prefixes webserver/, daemon/, worker/, run/)."
  value       = aws_cloudwatch_log_group.dagster.name
}

output "worker_service_name" {
  description = "ECS service of the ingestion worker (tidelake ingest --follow; desired count 1 with ingest_model = worker, else 0)."
  value       = aws_ecs_service.worker.name
}
