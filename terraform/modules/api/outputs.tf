output "url" {
  description = "Base URL of the API (point a DNS name covered by the certificate at alb_dns_name)."
  value       = "https://${aws_lb.api.dns_name}"
}

output "alb_dns_name" {
  description = "DNS name of the API's load balancer."
  value       = aws_lb.api.dns_name
}

output "alb_zone_id" {
  description = "Hosted zone of the API's load balancer (for a Route 53 alias record)."
  value       = aws_lb.api.zone_id
}

output "service_name" {
  description = "Name of the API's ECS service."
  value       = aws_ecs_service.api.name
}

output "task_role_arn" {
  description = "IAM role of the API tasks."
  value       = aws_iam_role.task.arn
}

output "task_security_group_id" {
  description = "Security group of the API tasks."
  value       = aws_security_group.tasks.id
}
